"""The one way hooks are called: pluggy's order and semantics, with an error boundary per plugin.

pluggy's own ``pm.hook.name(...)`` stops at the first implementation that raises and cannot await.
This dispatcher keeps everything else pluggy does (call order, ``firstresult``, new-style
``wrapper=True`` and old-style ``hookwrapper=True`` wrappers) and adds:

- an error policy chosen by the caller: ``skip`` (log and go on, for request-time hooks),
  ``unregister`` (the plugin fails to load and the box goes on, for start-up hooks) or ``raise``;
  a :class:`~appliance.errors.PluginError` (a rule the core enforces) always propagates;
- :meth:`HookCall.run_async`, which awaits each awaitable answer before deciding, so an ``async``
  implementation that returns None does not win a ``firstresult`` hook;
- :class:`PerPlugin` arguments, built for each implementation (a ``register`` callback that knows
  which plugin registers).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from appliance.errors import PluginError

if TYPE_CHECKING:
    from appliance.plugins import Plugins

log = logging.getLogger(__name__)

OnError = Literal["skip", "unregister", "raise"]


@dataclass(frozen=True)
class Answer:
    """One implementation's (non-None) answer to a hook."""

    plugin: str
    value: Any


@dataclass(frozen=True)
class PerPlugin:
    """A hook argument made for each implementation: ``make(plugin_name)``."""

    make: Callable[[str], Any]


def describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class HookCall:
    def __init__(self, plugins: Plugins, hook_name: str, on_error: OnError, kwargs: dict[str, Any]):
        caller = getattr(plugins.pm.hook, hook_name)
        self.plugins = plugins
        self.hook_name = hook_name
        self.on_error = on_error
        self.kwargs = kwargs
        self.firstresult = bool(caller.spec and caller.spec.opts.get("firstresult"))
        impls = list(reversed(caller.get_hookimpls()))  # pluggy calls the last registered first
        self.wrappers = [i for i in impls if i.wrapper or i.hookwrapper]
        self.plain = [i for i in impls if not (i.wrapper or i.hookwrapper)]

    def _args(self, impl: pluggy.HookImpl) -> dict[str, Any]:
        args = {}
        for name in impl.argnames:
            value = self.kwargs[name]
            args[name] = value.make(impl.plugin_name) if isinstance(value, PerPlugin) else value
        return args

    def _failed(self, impl: pluggy.HookImpl, exc: BaseException) -> None:
        if isinstance(exc, PluginError) or self.on_error == "raise":
            raise exc
        if self.on_error == "unregister":
            self.plugins.fail(impl.plugin_name, f"{self.hook_name} failed: {describe(exc)}")
        else:
            log.error(
                "%s in plugin %s raised; ignoring that answer: %s",
                self.hook_name,
                impl.plugin_name,
                describe(exc),
                exc_info=exc,
            )

    def _invoke(self, impl: pluggy.HookImpl) -> tuple[bool, Any]:
        try:
            return True, impl.function(**self._args(impl))
        except Exception as exc:
            self._failed(impl, exc)
            return False, None

    def _enter_wrappers(self) -> list[tuple[pluggy.HookImpl, Generator[Any, Any, Any]]]:
        entered = []
        for impl in self.wrappers:
            ok, gen = self._invoke(impl)
            if not ok:
                continue
            try:
                next(gen)
            except Exception as exc:
                self._failed(impl, exc)
                continue
            entered.append((impl, gen))
        return entered

    def _exit_wrappers(
        self,
        entered: list[tuple[pluggy.HookImpl, Generator[Any, Any, Any]]],
        answers: list[Answer],
    ) -> list[Answer]:
        for impl, gen in reversed(entered):
            before = self._shape(answers)
            try:
                if impl.hookwrapper:
                    outcome: pluggy.Result[Any] = pluggy.Result(before, None)
                    with contextlib.suppress(StopIteration):
                        gen.send(outcome)
                    after = outcome.get_result()
                else:
                    try:
                        gen.send(before)
                    except StopIteration as stop:
                        after = stop.value
                    else:
                        raise RuntimeError("a wrapper must yield exactly once")
            except Exception as exc:
                self._failed(impl, exc)
                continue
            if after is not before:
                answers = self._reshape(after, answers, impl.plugin_name)
        return answers

    def _shape(self, answers: list[Answer]) -> Any:
        """What pluggy hands a wrapper: the first answer, or the list of answers."""
        if self.firstresult:
            return answers[0].value if answers else None
        return [a.value for a in answers]

    def _reshape(self, value: Any, answers: list[Answer], wrapper: str) -> list[Answer]:
        if self.firstresult:
            return [] if value is None else [Answer(wrapper, value)]
        values = list(value or [])
        if values == [a.value for a in answers]:
            return answers
        return [Answer(wrapper, v) for v in values]

    def _keep(self, impl: pluggy.HookImpl, value: Any, answers: list[Answer]) -> bool:
        """Record an answer; True when a firstresult hook is decided."""
        if value is None:
            return False
        answers.append(Answer(impl.plugin_name, value))
        return self.firstresult

    def run(self) -> list[Answer]:
        entered = self._enter_wrappers()
        answers: list[Answer] = []
        for impl in self.plain:
            ok, value = self._invoke(impl)
            if ok and self.firstresult and inspect.isawaitable(value):
                _discard(value)
                self._failed(impl, TypeError(f"{self.hook_name} is called synchronously"))
                continue
            if ok and self._keep(impl, value, answers):
                break
        return self._exit_wrappers(entered, answers)

    async def run_async(self) -> list[Answer]:
        entered = self._enter_wrappers()
        answers: list[Answer] = []
        for impl in self.plain:
            ok, value = self._invoke(impl)
            if ok and inspect.isawaitable(value):
                try:
                    value = await value
                except Exception as exc:
                    self._failed(impl, exc)
                    continue
            if ok and self._keep(impl, value, answers):
                break
        return self._exit_wrappers(entered, answers)


def _discard(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()
