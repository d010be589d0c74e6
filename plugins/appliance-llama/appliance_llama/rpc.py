"""llama.cpp's RPC backend (ggml-rpc), reached through ctypes from the wheel's own libraries.

A *worker* lends this box's memory and compute: ggml's RPC server listens on loopback, behind a
forwarder (:mod:`appliance_llama.rpc_worker`) that accepts only the allowed addresses. A *head*
splits a chat model's layers over its own device and the workers, in proportion to free memory.

ggml's RPC client aborts the whole process when it cannot connect or the handshake fails, so the
head checks every worker with a handshake of its own (:func:`probe`) before ggml ever sees it.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from appliance import ApplianceError, PooledMemory

log = logging.getLogger(__name__)

LIB_DIR = Path(llama_cpp.__file__).parent / "lib"
RPC_CMD_HELLO = 14
CONN_CAPS = 24
PROTO_MAJOR = 7
PROBE_TIMEOUT_S = 3.0
DEVICE_TYPE_CPU = 0
DEVICE_TYPES_GPU = (1, 2)


class RpcUnavailable(ApplianceError):
    status = 503
    error_type = "rpc_unavailable"


def _library(soname: str) -> ctypes.CDLL:
    """A library by its SONAME, from the wheel's folder first (where libllama found it). Its
    symbols stay local: whisper.cpp in the same process has a ggml of its own."""
    local = LIB_DIR / soname
    try:
        return ctypes.CDLL(str(local) if local.exists() else soname)
    except OSError as exc:
        raise RpcUnavailable(
            f"llama.cpp's RPC backend is not in this build ({soname}: {exc}); "
            "rebuild llama-cpp-python with -DGGML_RPC=ON (the Makefile does)"
        ) from None


@functools.cache
def ggml_base() -> ctypes.CDLL:
    lib = _library("libggml-base.so.0")
    void_p, size_p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)
    lib.ggml_backend_dev_memory.argtypes = [void_p, size_p, size_p]
    lib.ggml_backend_dev_memory.restype = None
    lib.ggml_backend_dev_name.argtypes = [void_p]
    lib.ggml_backend_dev_name.restype = ctypes.c_char_p
    lib.ggml_backend_reg_dev_count.argtypes = [void_p]
    lib.ggml_backend_reg_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_reg_dev_get.argtypes = [void_p, ctypes.c_size_t]
    lib.ggml_backend_reg_dev_get.restype = void_p
    lib.ggml_backend_dev_type.argtypes = [void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    return lib


@functools.cache
def _ggml_registry() -> ctypes.CDLL:
    lib = _library("libggml.so.0")
    lib.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    lib.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    lib.ggml_backend_dev_count.argtypes = []
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    return lib


@functools.cache
def _rpc() -> ctypes.CDLL:
    lib = _library("libggml-rpc.so.0")
    lib.ggml_backend_rpc_add_server.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_rpc_add_server.restype = ctypes.c_void_p
    lib.ggml_backend_rpc_start_server.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_void_p),
    ]
    lib.ggml_backend_rpc_start_server.restype = None
    return lib


def available() -> bool:
    try:
        _rpc()
    except RpcUnavailable:
        return False
    return bool(llama_cpp.llama_supports_rpc())


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{endpoint!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        part = sock.recv(size - len(data))
        if not part:
            raise ConnectionError("the worker closed the connection")
        data += part
    return data


def probe(endpoint: str, timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """ggml's RPC handshake, done here first (ggml aborts the process where this would fail).
    Returns the worker's protocol version; raises :class:`RpcUnavailable` saying why not."""
    try:
        host, port = split_endpoint(endpoint)
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(struct.pack("<BQ", RPC_CMD_HELLO, CONN_CAPS) + bytes(CONN_CAPS))
            (size,) = struct.unpack("<Q", _receive(sock, 8))
            if size != 4 + CONN_CAPS:
                raise ConnectionError(f"the answer to the handshake is {size} bytes, not 28")
            major, minor, patch = _receive(sock, size)[:3]
    except (OSError, ValueError) as exc:
        raise RpcUnavailable(f"RPC worker {endpoint} cannot be used: {exc}") from None
    if major != PROTO_MAJOR:
        raise RpcUnavailable(
            f"RPC worker {endpoint} speaks protocol {major}.{minor}.{patch}; this box speaks "
            f"{PROTO_MAJOR}.x (run the same appliance version on both)"
        )
    return f"{major}.{minor}.{patch}"


@dataclass(frozen=True)
class RpcDevice:
    """A worker's device as ggml sees it on this box."""

    endpoint: str
    handle: int
    free_bytes: int
    total_bytes: int
    local: bool = False
    """One of this box's own accelerators (then ``endpoint`` is its ggml name)."""

    @property
    def label(self) -> str:
        return self.endpoint if self.local else f"rpc:{self.endpoint}"


def _memory(device: int) -> tuple[int, int]:
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    ggml_base().ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
    return free.value, total.value


@functools.cache
def _devices_of(endpoint: str) -> tuple[int, ...]:
    """ggml keeps one registry entry per endpoint for the life of the process."""
    registry = _rpc().ggml_backend_rpc_add_server(endpoint.encode())
    if not registry:
        return ()
    count = ggml_base().ggml_backend_reg_dev_count(registry)
    return tuple(ggml_base().ggml_backend_reg_dev_get(registry, i) for i in range(count))


def connect(endpoints: list[str]) -> tuple[list[RpcDevice], list[str]]:
    """The devices of every worker that passes the handshake, and why each other one does not."""
    devices: list[RpcDevice] = []
    problems: list[str] = []
    for endpoint in endpoints:
        try:
            probe(endpoint)
        except RpcUnavailable as exc:
            problems.append(exc.message)
            continue
        handles = _devices_of(endpoint)
        if not handles:
            problems.append(f"RPC worker {endpoint} offers no device")
        for handle in handles:
            free, total = _memory(handle)
            devices.append(RpcDevice(endpoint, handle, free, total))
    return devices, problems


def local_devices() -> list[RpcDevice]:
    """This box's own accelerators (GPU, integrated GPU) as ggml lists them; none on a CPU box."""
    registry = _ggml_registry()
    found = []
    for i in range(registry.ggml_backend_dev_count()):
        handle = registry.ggml_backend_dev_get(i)
        if ggml_base().ggml_backend_dev_type(handle) in DEVICE_TYPES_GPU:
            name = (ggml_base().ggml_backend_dev_name(handle) or b"gpu").decode().lower()
            if not name.startswith("rpc"):
                found.append(RpcDevice(name, handle, *_memory(handle), local=True))
    return found


def local_free_bytes() -> int:
    """Free memory of this box's own CPU device, as ggml counts it."""
    return _memory(_ggml_registry().ggml_backend_dev_by_type(DEVICE_TYPE_CPU))[0]


@dataclass(frozen=True)
class Split:
    """Where a model's layers go: ``gpu_layers`` of them over ``devices`` (in ``shares``), the
    rest on this box's CPU."""

    devices: tuple[RpcDevice, ...]
    gpu_layers: int
    shares: tuple[float, ...]
    on_cpu: bool

    @property
    def labels(self) -> tuple[str, ...]:
        return (*(("cpu",) if self.on_cpu else ()), *(d.label for d in self.devices))


def plan_split(
    remote: list[RpcDevice], layers: int, local_free: int, local: list[RpcDevice] | None = None
) -> Split | None:
    """Layers in proportion to free memory. On a box with a GPU every layer goes to the GPUs
    (its own and the workers'); on a CPU box this box keeps its share and each worker gets its."""
    if not remote or layers <= 0:
        return None
    devices = [*(local or []), *remote]
    pool = sum(d.free_bytes for d in devices)
    if pool <= 0:
        return None
    shares = tuple(d.free_bytes / pool for d in devices)
    if local:
        return Split(tuple(devices), layers + 1, shares, on_cpu=False)
    offloaded = min(layers, max(1, round(layers * pool / (pool + max(local_free, 0)))))
    return Split(tuple(devices), offloaded, shares, on_cpu=True)


def serve_forever(endpoint: str, n_threads: int) -> None:
    """ggml's RPC server for this box's CPU device; blocks (run it on a thread)."""
    device = _ggml_registry().ggml_backend_dev_by_type(DEVICE_TYPE_CPU)
    devices = (ctypes.c_void_p * 1)(device)
    _rpc().ggml_backend_rpc_start_server(endpoint.encode(), None, n_threads, 1, devices)


class RpcPool:
    """The workers named by ``rpc_workers``, as this head box uses them.

    Checked with a handshake at start-up (for the hardware choice) and again before each load: a
    worker gone since then is left out, so the model loads on this box alone when it fits there,
    or fails with a clear error when it needs the pool. While a loaded model holds a worker, ggml
    keeps one connection to it (and the worker serves one connection at a time), so it is not
    probed again until that model is unloaded.
    """

    def __init__(self, endpoints: tuple[str, ...]) -> None:
        self.endpoints = endpoints
        self.problems: list[str] = []
        self.devices: list[RpcDevice] = []
        self._in_use: dict[str, int] = {}
        self._lock = threading.Lock()
        if not endpoints:
            return
        if not available():
            self.problems = [f"{e}: this build of llama.cpp has no RPC backend" for e in endpoints]
            return
        self.devices, self.problems = connect(list(endpoints))
        for problem in self.problems:
            log.warning("%s", problem)

    def pooled(self) -> list[PooledMemory]:
        found = [PooledMemory(d.label, d.free_bytes) for d in self.devices]
        reached = {d.endpoint for d in self.devices}
        missing = [e for e in self.endpoints if e not in reached]
        return found + [
            PooledMemory(f"rpc:{e}", 0, problem=_problem_of(e, self.problems)) for e in missing
        ]

    def split_for(self, name: str, layers: int, needs_pool: bool) -> Split | None:
        """Where ``name``'s layers go now; None: on this box alone."""
        if not self.devices:
            if needs_pool:
                raise RpcUnavailable(
                    f"{name} needs the memory of the RPC workers and none can be used: "
                    + "; ".join(self.problems)
                )
            return None
        live, problems = [], []
        with self._lock:
            for device in self.devices:
                try:
                    if not self._in_use.get(device.endpoint):
                        probe(device.endpoint)
                    free, total = _memory(device.handle)
                    live.append(RpcDevice(device.endpoint, device.handle, free, total))
                except RpcUnavailable as exc:
                    problems.append(exc.message)
            if problems and needs_pool:
                raise RpcUnavailable(f"{name} needs the RPC workers: " + "; ".join(problems))
            for problem in problems:
                log.warning("%s; %s loads without it", problem, name)
            split = plan_split(live, layers, local_free_bytes(), local_devices())
            for device in [d for d in split.devices if not d.local] if split else ():
                self._in_use[device.endpoint] = self._in_use.get(device.endpoint, 0) + 1
        return split

    def release(self, split: Split) -> None:
        with self._lock:
            for device in split.devices:
                self._in_use[device.endpoint] = max(0, self._in_use.get(device.endpoint, 0) - 1)


def _problem_of(endpoint: str, problems: list[str]) -> str:
    return next((p for p in problems if endpoint in p), "cannot be reached")
