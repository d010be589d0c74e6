"""The object handed to plugins: settings, plugins, history, registry, scheduler."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from appliance import __version__
from appliance.auth import (
    Actor,
    active_token_count,
    actor_of_row,
    find_token,
)
from appliance.brake import FailureBrake
from appliance.capabilities import Embedder, EmbeddingResult
from appliance.discovery.zeroconf import Zeroconf
from appliance.errors import ApplianceError, Forbidden
from appliance.hardware.calibrate import (
    Calibration,
    calibrate,
    load_calibration,
    save_calibration,
)
from appliance.hardware.facts import HardwareFacts, probe
from appliance.hardware.fit import Choice, choose
from appliance.hardware.profiles import BUILTIN_DIR, GENERIC, HardwareProfile, load_profiles
from appliance.history.conversations import purge_older_than
from appliance.history.db import HistoryDB
from appliance.history.migrations import Migration, apply_migrations
from appliance.history.schema import CORE_MIGRATIONS
from appliance.hookcall import PerPlugin
from appliance.metrics import Metrics
from appliance.models.catalog import load_catalog
from appliance.models.sources import ModelSource
from appliance.models.store import ModelStore
from appliance.plugins import Plugins
from appliance.quotas import Quotas
from appliance.registry import ModelKind, Registered, Registry
from appliance.scheduler import Scheduler
from appliance.settings import Settings

if TYPE_CHECKING:
    from appliance.capabilities.retrieve import ContextChunk

log = logging.getLogger(__name__)
T = TypeVar("T")
PUBLIC_PATHS = frozenset({"/", "/appliance/health", "/.well-known/appliance.json", "/api/version"})


@dataclass(frozen=True)
class StateKey(Generic[T]):
    """Names a plugin's per-appliance state: ``KEY = StateKey[Collections]("rag")``."""

    name: str


@dataclass(frozen=True)
class Event:
    """Something that happened: ``name`` like "request", "token.created", "model.loaded"."""

    name: str
    actor: Actor | None = None
    resource: str = ""
    address: str = ""
    request_id: str = ""
    status: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


def instance_id(settings: Settings) -> str:
    """A stable id for this box, created once in its home directory."""
    path = settings.home / "instance-id"
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return value
    settings.home.mkdir(parents=True, exist_ok=True)
    value = uuid.uuid4().hex[:12]
    path.write_text(value + "\n")
    return value


class Appliance:
    def __init__(self, settings: Settings, plugins: Plugins) -> None:
        self.settings = settings
        self.plugins = plugins
        self.profile: HardwareProfile = GENERIC
        self.facts: HardwareFacts | None = None
        self.choice: Choice | None = None
        self.calibration: Calibration | None = None
        self.version = __version__
        self.id = instance_id(settings)
        self.started_at = time.time()
        self.announced_name = ""
        self.jobs: Any = None
        self._db: HistoryDB | None = None
        self.registry = Registry()
        self.catalog = load_catalog()
        self.store = ModelStore(settings.models_dir, self.catalog)
        self.scheduler = Scheduler(settings.queue_size, settings.keep_alive_s)
        self.auth_brake = FailureBrake()
        self.quotas = Quotas()
        self.metrics = Metrics(self)
        self._background: set[asyncio.Task[Any]] = set()
        self._state: dict[StateKey[Any], Any] = {}
        self.model_tasks: dict[str, dict[str, Any]] = {}
        """Model fetches and verifications started over HTTP, with their progress."""
        self.public_paths: set[str] = set()
        """Plugin paths reachable without a token (a trailing ``*``: everything under it)."""
        self.zeroconf = Zeroconf(settings.host)
        for kind in ("chat", "embed", "transcribe"):
            self.registry.of_kind(kind).prefer = functools.partial(self._prefer, kind)

    def detect(self) -> Choice:
        """Probe the hardware, pick the profile, and choose the models that fit."""
        settings = self.settings
        self.facts = probe(settings.hardware_root, settings.home)
        profiles = load_profiles([BUILTIN_DIR, settings.home / "hw-profiles"])
        chosen = self.plugins.first("select_hardware_profile", facts=self.facts, profiles=profiles)
        self.profile = chosen if isinstance(chosen, HardwareProfile) else GENERIC
        self.calibration = load_calibration(settings.home, self.profile)
        answers = self.plugins.call("pooled_memory", appliance=self)
        pooled = [memory for answer in answers for memory in answer.value]
        self.choice = choose(
            self.profile,
            self.facts,
            self.catalog,
            efficiency=self.calibration.efficiency if self.calibration else None,
            excluded=self.calibration.excluded if self.calibration else None,
            pooled=tuple(pooled),
        )
        return self.choice

    def model_sources(self) -> dict[str, ModelSource]:
        """Model sources plugins add, by scheme (``fleet:NAME``: a peer of the fleet)."""
        sources: dict[str, ModelSource] = {}
        for answer in self.plugins.call("register_model_sources", appliance=self):
            sources.update(answer.value)
        return sources

    def default_model(self, kind: ModelKind) -> str | None:
        """The one rule for "the box's model" of a kind: the setting (``chat_model``,
        ``embed_model``), else the hardware choice when it is served, else the first served."""
        served = self.registry.of_kind(kind)
        for name in (self._configured_model(kind), self._chosen_model(kind)):
            resolved = served.resolve(name) if name else None
            if resolved:
                return resolved
        names = served.names()
        return names[0] if names else None

    def _configured_model(self, kind: ModelKind) -> str:
        return {"chat": self.settings.chat_model, "embed": self.settings.embed_model}.get(kind, "")

    def _chosen_model(self, kind: ModelKind) -> str:
        choice = self.choice
        if choice is None:
            return ""
        if kind == "chat":
            return choice.chat.model if choice.chat else ""
        return choice.embed_model if kind == "embed" else choice.transcribe_model

    def _prefer(self, kind: ModelKind, names: list[str]) -> str:
        for wanted in (self._configured_model(kind), self._chosen_model(kind)):
            if wanted in names:
                return wanted
        return names[0]

    def default_chat_model(self) -> str | None:
        return self.default_model("chat")

    def is_public(self, path: str) -> bool:
        if path in PUBLIC_PATHS or path in self.public_paths:
            return True
        return any(p.endswith("*") and path.startswith(p[:-1]) for p in self.public_paths)

    async def is_open(self) -> bool:
        """Whether the box runs without auth: only on loopback, and only while no token exists."""
        if not self.settings.is_loopback:
            return False
        count: int = await self.db.read(lambda db: active_token_count(db))
        return count == 0

    async def auth_mode(self) -> str:
        """What discovery tells clients: "none" for an open box, else "required"."""
        return "none" if await self.is_open() else "required"

    def state(self, key: StateKey[T], make: Callable[[], T]) -> T:
        """Per-appliance state a plugin keeps (a service, a cache), made on first use."""
        if key not in self._state:
            self._state[key] = make()
        value: T = self._state[key]
        return value

    def drop_state(self, key: StateKey[Any]) -> None:
        self._state.pop(key, None)

    async def enforce_retention(self) -> int:
        """Delete history older than ``history_retention_days`` (0 keeps everything)."""
        days = self.settings.history_retention_days
        if not days:
            return 0
        cutoff = time.time() - days * 86400
        removed: int = await self.db.write(lambda db: purge_older_than(db, cutoff))
        if removed:
            log.info("retention: removed %d conversations older than %d days", removed, days)
        return removed

    def plugin_actor(self, name: str) -> Actor:
        """The identity a plugin acts under; its declared PERMISSIONS decide what it may do."""
        return Actor(id=f"plugin:{name}", name=name, role="plugin", via="plugin")

    def add_chat_model(self, plugin: str, model: Any) -> None:
        """Register a chat model while serving (e.g. a preset); needs ``models.register``."""
        if not self.allowed(self.plugin_actor(plugin), "models.register", model.name):
            raise Forbidden(f"plugin {plugin!r} did not declare the 'models.register' permission")
        self.registry.chat.add(model.name, model, plugin)

    def remove_chat_model(self, plugin: str, name: str) -> None:
        self.registry.chat.remove(name, owner=plugin)

    async def actor_for_token(self, token: str) -> Actor | None:
        """Who a bearer token stands for (None: unknown, revoked or expired)."""
        row = await self.db.read(lambda db: find_token(db, token))
        return None if row is None else actor_of_row(row)

    async def check_limits(self, actor: Actor, model: str | None) -> None:
        """Refuse (403/429, audited) a request beyond its token's limits; count it otherwise."""
        if actor.limits is None or not actor.limits.any:
            return
        try:
            await self.quotas.check(self.db, actor.id, actor.limits, model)
        except ApplianceError as exc:
            detail = {"model": model, "code": exc.code, "status": exc.status}
            self.track(Event("token.limited", actor=actor, resource=model or "", detail=detail))
            raise

    async def spend(self, actor: Actor, tokens: int) -> None:
        """Count tokens against a token's daily limit (when it has one)."""
        if actor.limits is not None and actor.limits.tokens_per_day:
            await self.quotas.spend(self.db, actor.id, tokens)

    async def embed_for(
        self, actor: Actor, embedder: Embedder, texts: list[str], keep_alive: float | None = None
    ) -> EmbeddingResult:
        """Embeddings for a user's request, within their token's limits."""
        await self.check_limits(actor, embedder.name)
        result = await self.scheduler.embed(embedder, texts, keep_alive)
        await self.spend(actor, result.prompt_tokens)
        return result

    async def calibrate(self) -> Calibration | None:
        """Measure decode speed on the chosen chat model (or the served one), keep the result,
        and choose again with the measured efficiency (stepping down past a failed model)."""
        served = self.registry.chat.names()
        if not served:
            return None
        chosen = self._chosen_model("chat")
        model = self.registry.chat.get(chosen if chosen in served else served[0])
        previous = self.calibration
        result = await calibrate(self.scheduler, model, self.profile, self.catalog, previous)
        save_calibration(self.settings.home, result)
        self.detect()
        log.info("calibrated on %s: %.1f tok/s measured", model.name, result.measured_tps)
        return result

    @property
    def db(self) -> HistoryDB:
        if self._db is None:
            raise RuntimeError("the appliance is not open; call open() first")
        return self._db

    def open(self) -> list[tuple[str, str]]:
        """Open the database and apply pending migrations; return those applied."""
        if self._db is None:
            self._db = HistoryDB(self.settings.db_path)
        return self.migrate()

    def migrate(self) -> list[tuple[str, str]]:
        migrations: list[tuple[str, Migration]] = [("core", m) for m in CORE_MIGRATIONS]

        self.plugins.call(
            "register_migrations",
            on_error="unregister",
            register=lambda owner, m: migrations.append((owner, m)),
        )
        return self.db.write_sync(lambda db: apply_migrations(db, migrations))

    def register_models(self) -> None:
        """Ask plugins for their models. A plugin that registers a clashing name fails start-up."""
        for hook, target in (
            ("register_chat_models", self.registry.chat),
            ("register_embedders", self.registry.embedders),
            ("register_transcribers", self.registry.transcribers),
            ("register_image_classifiers", self.registry.image_classifiers),
            ("register_image_describers", self.registry.image_describers),
            ("register_document_loaders", self.registry.loaders),
        ):
            self.plugins.call(
                hook,
                on_error="unregister",
                register=PerPlugin(functools.partial(_adder, target)),
                profile=self.profile,
                appliance=self,
            )

    def track(self, event: Event) -> None:
        """Tell every ``track_event`` listener; a failing listener is logged, never raised."""
        for answer in self.plugins.call("track_event", appliance=self, event=event):
            if inspect.isawaitable(answer.value):
                self.spawn(_logged(answer.plugin, answer.value))

    def spawn(self, awaitable: Any) -> None:
        """Run a coroutine in the background, keeping a reference until it finishes."""
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def prompt_context(self, request: dict[str, Any]) -> list[ContextChunk]:
        chunks: list[ContextChunk] = []
        for answer in await self.plugins.acall("prompt_context", appliance=self, request=request):
            chunks.extend(answer.value or [])
        return chunks

    def allowed(self, actor: Actor | None, action: str, resource: str | None = None) -> bool:
        """Any False denies, any True allows, silence denies; a vote that raises denies."""
        try:
            votes = self.plugins.call(
                "permission_allowed",
                on_error="raise",
                appliance=self,
                actor=actor,
                action=action,
                resource=resource,
            )
        except Exception:
            log.exception("a permission_allowed vote raised; denying %s", action)
            return False
        if any(v.value is False for v in votes):
            return False
        return any(v.value is True for v in votes)

    def close(self) -> None:
        self.scheduler.shutdown()
        if self._db is not None:
            self._db.close()
            self._db = None


def _adder(target: Registered[Any], owner: str) -> Callable[[Any], None]:
    def register(item: Any) -> None:
        target.add(item.name, item, owner)

    return register


async def _logged(plugin: str, awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("track_event in plugin %s raised; ignored", plugin)
