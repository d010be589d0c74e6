"""The object handed to plugins: settings, plugins, history, registry, scheduler."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appliance import __version__
from appliance.auth import Actor
from appliance.brake import FailureBrake
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
from appliance.models.catalog import load_catalog
from appliance.models.store import ModelStore
from appliance.plugins import Plugins
from appliance.registry import Registry
from appliance.scheduler import Scheduler
from appliance.settings import Settings

if TYPE_CHECKING:
    from appliance.capabilities.retrieve import ContextChunk

log = logging.getLogger(__name__)


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
        self._background: set[asyncio.Task[Any]] = set()

    def detect(self) -> Choice:
        """Probe the hardware, pick the profile, and choose the models that fit."""
        settings = self.settings
        self.facts = probe(settings.hardware_root, settings.home)
        profiles = load_profiles([BUILTIN_DIR, settings.home / "hw-profiles"])
        chosen = self.plugins.call_first(
            "select_hardware_profile", facts=self.facts, profiles=profiles
        )
        self.profile = chosen if isinstance(chosen, HardwareProfile) else GENERIC
        self.calibration = load_calibration(settings.home, self.profile)
        self.choice = choose(
            self.profile,
            self.facts,
            self.catalog,
            efficiency=self.calibration.efficiency if self.calibration else None,
            excluded=self.calibration.excluded if self.calibration else None,
        )
        return self.choice

    def default_chat_model(self) -> str | None:
        """The ``chat_model`` setting, else the hardware choice when served, else the first."""
        served = self.registry.chat.names()
        chosen = self.choice.chat.model if self.choice and self.choice.chat else ""
        for name in (self.settings.chat_model, chosen):
            if name and name in self.registry.chat:
                return name
        return served[0] if served else None

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
        from appliance.errors import Forbidden

        if not self.allowed(self.plugin_actor(plugin), "models.register", model.name):
            raise Forbidden(f"plugin {plugin!r} did not declare the 'models.register' permission")
        self.registry.chat.add(model.name, model, plugin)

    def remove_chat_model(self, plugin: str, name: str) -> None:
        if self.registry.chat.owners.get(name) == plugin:
            del self.registry.chat.items[name]
            del self.registry.chat.owners[name]

    async def calibrate(self) -> Calibration | None:
        """Measure decode speed on the chosen chat model (or the served one), keep the result,
        and choose again with the measured efficiency (stepping down past a failed model)."""
        served = self.registry.chat.names()
        if not served:
            return None
        chosen = self.choice.chat.model if self.choice and self.choice.chat else ""
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

        for owner, result in self.plugins.call_each(
            "register_migrations", register=lambda o, m: migrations.append((o, m))
        ):
            del owner, result
        return self.db.write_sync(lambda db: apply_migrations(db, migrations))

    def register_models(self) -> None:
        """Ask plugins for their models. A plugin that registers a clashing name fails start-up."""
        for hook, target in (
            ("register_chat_models", self.registry.chat),
            ("register_embedders", self.registry.embedders),
            ("register_transcribers", self.registry.transcribers),
        ):
            caller = getattr(self.plugins.hook, hook)
            for impl in reversed(caller.get_hookimpls()):
                owner = impl.plugin_name

                def register(item: Any, owner: str = owner, target: Any = target) -> None:
                    target.add(item.name, item, owner)

                self._call_registration(
                    impl, hook, register=register, profile=self.profile, appliance=self
                )
        for impl in reversed(self.plugins.hook.register_document_loaders.get_hookimpls()):
            owner = impl.plugin_name

            def add_loader(item: Any, owner: str = owner) -> None:
                self.registry.loaders.add(item.name, item, owner)

            self._call_registration(impl, "register_document_loaders", register=add_loader)

    def _call_registration(self, impl: Any, hook: str, **kwargs: Any) -> None:
        from appliance.errors import PluginError

        try:
            impl.function(**{n: kwargs[n] for n in impl.argnames})
        except PluginError:
            raise
        except Exception as exc:
            self.plugins.fail(impl.plugin_name, f"{hook} failed: {type(exc).__name__}: {exc}")

    def track(self, event: Event) -> None:
        """Tell every ``track_event`` listener; a failing listener is logged, never raised."""
        for _, result in self.plugins.call_each(
            "track_event", unregister_on_error=False, appliance=self, event=event
        ):
            if inspect.isawaitable(result):
                self.spawn(result)

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
        for _, result in self.plugins.call_each(
            "prompt_context", unregister_on_error=False, appliance=self, request=request
        ):
            value = await result if inspect.isawaitable(result) else result
            if value:
                chunks.extend(value)
        return chunks

    def allowed(self, actor: Actor | None, action: str, resource: str | None = None) -> bool:
        """Any False denies, any True allows, silence denies; a vote that raises denies."""
        args = {"appliance": self, "actor": actor, "action": action, "resource": resource}
        allow = False
        for impl in self.plugins.hook.permission_allowed.get_hookimpls():
            try:
                vote = impl.function(**{n: args[n] for n in impl.argnames})
            except Exception:
                log.exception("permission_allowed in %s raised; denying", impl.plugin_name)
                return False
            if vote is False:
                return False
            allow = allow or vote is True
        return allow

    def close(self) -> None:
        self.scheduler.shutdown()
        if self._db is not None:
            self._db.close()
            self._db = None
