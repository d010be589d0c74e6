"""Ending a running ``llama_decode`` early, from another thread, without Python in the loop.

llama.cpp asks an abort callback after every graph node on its compute thread. A Python callback
would take the GIL there hundreds of times a step, competing with the event loop; so the callback
is ggml's own ``ggml_is_empty``, pointed at a tensor header whose first dimension is 1 (carry on)
or 0 (stop). An aborted decode returns 2 and llama.cpp removes what it had written for that
batch, so the batch can simply be decoded again. The mechanism checks itself when it is made and
stays off (steps then run to their end) where the check fails.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import Any

import llama_cpp

from appliance import ApplianceError
from appliance_llama import rpc

log = logging.getLogger(__name__)
ABORTED = 2
"""What ``llama_decode`` returns for a batch its abort callback stopped."""


class _TensorHead(ctypes.Structure):
    """The start of ggml's ``struct ggml_tensor``, as far as ``ggml_is_empty`` reads it."""

    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4)]


@functools.cache
def _is_empty() -> Any:
    try:
        function = rpc.ggml_base().ggml_is_empty
    except (ApplianceError, AttributeError) as exc:
        log.warning("steps cannot be interrupted: %s", exc)
        return None
    function.argtypes = [ctypes.c_void_p]
    function.restype = ctypes.c_bool
    return function


class StepInterrupt:
    """A flag that llama.cpp reads between the nodes of a context's running decode."""

    def __init__(self, ctx: Any) -> None:
        self._head = _TensorHead(ne=(1, 1, 1, 1))
        self._address = ctypes.addressof(self._head)
        function = _is_empty()
        self.available = function is not None and self._checks_out(function)
        if not self.available:
            return
        pointer = ctypes.cast(function, ctypes.c_void_p).value
        self._callback = llama_cpp.ggml_abort_callback(pointer)  # kept alive with the context
        llama_cpp.llama_set_abort_callback(ctx, self._callback, ctypes.c_void_p(self._address))

    def _checks_out(self, function: Any) -> bool:
        running = function(self._address)
        self.set()
        stopped = function(self._address)
        self.clear()
        if running is False and stopped is True:
            return True
        log.warning("steps cannot be interrupted: this ggml's tensor layout is not the one known")
        return False

    def set(self) -> None:
        self._head.ne[0] = 0

    def clear(self) -> None:
        self._head.ne[0] = 1
