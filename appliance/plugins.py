"""The plugin manager: entry-point group ``appliance``, an allow-list, and per-plugin isolation.

Each plugin is imported and registered inside its own error boundary. One that fails is recorded
with its error and skipped; the box keeps serving. Hooks that plugins answer at start-up are called
one implementation at a time through :meth:`Plugins.call_each` for the same reason.
"""

from __future__ import annotations

import importlib
import logging
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from appliance import hookspecs

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
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "loaded": self.loaded,
            "error": self.error,
            "hooks": self.hooks,
            "permissions": self.permissions,
            "routes": self.routes,
        }


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

    def call_each(
        self, hook_name: str, *, unregister_on_error: bool = True, **kwargs: Any
    ) -> list[tuple[str, Any]]:
        """Call every implementation of a hook in pluggy's order, isolating failures.

        At start-up a plugin whose implementation raises is unregistered and reported; at request
        time (``unregister_on_error=False``) the failure is logged and that answer skipped.
        """
        results: list[tuple[str, Any]] = []
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:
                continue
            args = {name: kwargs[name] for name in impl.argnames}
            try:
                result = impl.function(**args)
            except Exception as exc:
                if not unregister_on_error:
                    log.exception("%s in plugin %s raised", hook_name, impl.plugin_name)
                    continue
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                self.fail(impl.plugin_name, f"{hook_name} failed: {detail}")
                continue
            if result is not None:
                results.append((impl.plugin_name, result))
        return results

    def call_first(self, hook_name: str, **kwargs: Any) -> Any:
        """A ``firstresult`` call that logs and skips an implementation that raises."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:
                continue
            try:
                result = impl.function(**{n: kwargs[n] for n in impl.argnames})
            except Exception:
                log.exception("%s in plugin %s raised; ignoring it", hook_name, impl.plugin_name)
                continue
            if result is not None:
                return result
        return None

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
            record.error = (
                "could not import: "
                + "".join(traceback.format_exception_only(type(exc), exc)).strip()
            )
            plugins.records[ep.name] = record
            log.error("plugin %s skipped: %s", ep.name, record.error)
            continue
        plugins.register(module, record)
    for name, obj in extra:
        plugins.register(obj, PluginRecord(name=name, module=type(obj).__module__))
    plugins.pm.check_pending()
    return plugins
