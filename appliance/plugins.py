"""The plugin manager: entry-point group ``appliance``, an allow-list, and per-plugin isolation.

Each plugin is imported and registered inside its own error boundary. One that fails is recorded
with its error and skipped; the box keeps serving. Hooks that plugins answer at start-up are called
one implementation at a time through :meth:`Plugins.call` (``appliance.hookcall``) for the same
reason.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from appliance import hookspecs
from appliance.hookcall import Answer, HookCall, OnError, describe

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "appliance"
BUILTIN_PLUGINS = (
    "appliance.default_plugins.auth",
    "appliance.default_plugins.audit",
    "appliance.default_plugins.hardware",
)


@dataclass
class PluginRecord:
    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    loaded: bool = False
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    permissions: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Plugins:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("appliance")
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def register(self, module: ModuleType | object, record: PluginRecord) -> bool:
        """Register one plugin object; record and undo on any error. Return whether it loaded."""
        self.records[record.name] = record
        try:
            self.pm.register(module, name=record.name)
            unknown = [
                caller.name
                for caller in self.pm.get_hookcallers(module) or []
                if not caller.has_spec()
            ]
            if unknown:
                raise pluggy.PluginValidationError(
                    module, f"implements unknown hooks: {', '.join(sorted(unknown))}"
                )
        except Exception as exc:
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            record.error = f"could not register: {exc}"
            log.error("plugin %s skipped: %s", record.name, record.error)
            return False
        record.loaded = True
        record.hooks = sorted(c.name for c in self.pm.get_hookcallers(module) or [])
        record.permissions = sorted(str(p) for p in getattr(module, "PERMISSIONS", ()))
        return True

    def fail(self, name: str, error: str) -> None:
        """Mark a registered plugin as failed (a registration hook raised) and unregister it."""
        record = self.records.get(name)
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        if record is not None:
            record.loaded = False
            record.error = error
        log.error("plugin %s skipped: %s", name, error)

    def call(self, hook_name: str, *, on_error: OnError = "skip", **kwargs: Any) -> list[Answer]:
        """Call a hook the one way hooks are called (see :mod:`appliance.hookcall`)."""
        return HookCall(self, hook_name, on_error, kwargs).run()

    async def acall(
        self, hook_name: str, *, on_error: OnError = "skip", **kwargs: Any
    ) -> list[Answer]:
        """:meth:`call`, awaiting each awaitable answer before the next implementation runs."""
        return await HookCall(self, hook_name, on_error, kwargs).run_async()

    def first(self, hook_name: str, **kwargs: Any) -> Any:
        """The answer of a ``firstresult`` hook, or None."""
        answers = self.call(hook_name, **kwargs)
        return answers[0].value if answers else None

    def as_list(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.records.values()]


def _selected(name: str, allow: Iterable[str] | None, deny: Iterable[str]) -> bool:
    return (allow is None or name in set(allow)) and name not in set(deny)


def load_plugins(
    allow: tuple[str, ...] | None = None,
    extra: Iterable[tuple[str, object]] = (),
    deny: tuple[str, ...] = (),
) -> Plugins:
    """Load the built-ins, then every ``appliance`` entry point the allow-list admits.

    ``allow``: None loads all; an empty tuple loads none; otherwise only the names given.
    ``deny``: names never loaded (disabled plugins).
    ``extra``: (name, object) pairs registered as plugins too (tests use this).
    """
    plugins = Plugins()
    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        plugins.register(module, PluginRecord(name=module_name, module=module_name, builtin=True))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if not _selected(ep.name, allow, deny):
            continue
        dist = ep.dist
        record = PluginRecord(
            name=ep.name,
            module=ep.value,
            distribution=dist.metadata["Name"] if dist else None,
            version=dist.version if dist else None,
        )
        try:
            module = ep.load()
        except BaseException as exc:  # a plugin may even call sys.exit at import
            if isinstance(exc, KeyboardInterrupt):
                raise
            record.error = f"could not import: {describe(exc)}"
            plugins.records[ep.name] = record
            log.error("plugin %s skipped: %s", ep.name, record.error)
            continue
        plugins.register(module, record)
    for name, obj in extra:
        plugins.register(obj, PluginRecord(name=name, module=type(obj).__module__))
    plugins.pm.check_pending()
    return plugins
