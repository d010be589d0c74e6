"""Hardware facts, read only from what a normal user can read, under a given root.

Every reader takes ``root`` so tests run on fixture trees. A missing or garbled file degrades to
"unknown" (empty, zero or None); probing never raises.
"""

from __future__ import annotations

import contextlib
import platform
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

UNKNOWN = "unknown"


@dataclass(frozen=True)
class GPU:
    vendor: str
    model: str
    memory_bytes: int = 0


@dataclass(frozen=True)
class HardwareFacts:
    arch: str = UNKNOWN
    cpu_vendor: str = UNKNOWN
    cpu_model: str = UNKNOWN
    cpu_family: int | None = None
    cpu_model_number: int | None = None
    cpu_part: str = ""
    cpu_flags: tuple[str, ...] = ()
    cpu_cores: int = 0
    mem_total_bytes: int = 0
    mem_available_bytes: int = 0
    cgroup_limit_bytes: int | None = None
    dt_model: str = ""
    dt_compatible: tuple[str, ...] = ()
    tegra_release: str = ""
    gpus: tuple[GPU, ...] = ()
    intel_igpu: bool = False
    disk_free_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usable_memory_bytes(self) -> int:
        """MemAvailable, capped by a cgroup limit as Ollama does."""
        available = self.mem_available_bytes or self.mem_total_bytes
        if self.cgroup_limit_bytes:
            available = min(available, self.cgroup_limit_bytes)
        return available

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usable_memory_bytes"] = self.usable_memory_bytes
        return data


def _read(root: Path, path: str) -> str:
    try:
        return (root / path.lstrip("/")).read_text(errors="replace")
    except (OSError, ValueError):
        return ""


def _int(text: str) -> int | None:
    with contextlib.suppress(ValueError):
        return int(text.strip(), 0)
    return None


def parse_cpuinfo(text: str) -> dict[str, Any]:
    fields: dict[str, str] = {}
    cores = 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "processor":
            cores += 1
        fields.setdefault(key, value)
    flags = tuple(sorted((fields.get("flags") or fields.get("features") or "").split()))
    is_arm = "cpu implementer" in fields or "cpu architecture" in fields
    return {
        "arch": "aarch64" if is_arm else ("x86_64" if "flags" in fields else UNKNOWN),
        "cpu_vendor": fields.get("vendor_id") or ("ARM" if is_arm else UNKNOWN),
        "cpu_model": fields.get("model name")
        or fields.get("model")
        or fields.get("hardware")
        or UNKNOWN,
        "cpu_family": _int(fields.get("cpu family", "")),
        "cpu_model_number": _int(fields.get("model", "")) if not is_arm else None,
        "cpu_part": fields.get("cpu part", ""),
        "cpu_flags": flags,
        "cpu_cores": cores,
    }


def parse_meminfo(text: str) -> tuple[int, int]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+):\s+(\d+)\s*kB", line)
        if match:
            values[match.group(1)] = int(match.group(2)) * 1024
    total = values.get("MemTotal", 0)
    return total, values.get("MemAvailable", values.get("MemFree", 0))


def _cgroup_limit(root: Path) -> int | None:
    for path in ("sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"):
        value = _int(_read(root, path)) if _read(root, path).strip() != "max" else None
        if value and value < 1 << 60:
            return value
    return None


def _nvidia_gpus(root: Path) -> list[GPU]:
    gpus = []
    base = root / "proc/driver/nvidia/gpus"
    with contextlib.suppress(OSError):
        for info in sorted(base.glob("*/information")):
            text = info.read_text(errors="replace")
            model = re.search(r"^Model:\s*(.+)$", text, re.M)
            memory = re.search(r"^Video Memory:\s*(\d+)\s*MB", text, re.M)
            gpus.append(
                GPU(
                    "nvidia",
                    model.group(1).strip() if model else UNKNOWN,
                    int(memory.group(1)) * 2**20 if memory else 0,
                )
            )
    return gpus


def _drm_gpus(root: Path) -> tuple[list[GPU], bool]:
    gpus: list[GPU] = []
    intel = False
    with contextlib.suppress(OSError):
        for card in sorted((root / "sys/class/drm").glob("card[0-9]*")):
            if "-" in card.name:
                continue
            vendor = _read(root, str(card.relative_to(root) / "device/vendor")).strip().lower()
            if vendor == "0x8086":
                intel = True
            vram = _int(_read(root, str(card.relative_to(root) / "device/mem_info_vram_total")))
            if vendor == "0x1002" and vram:
                gpus.append(GPU("amd", card.name, vram))
    return gpus, intel


def probe(root: Path = Path("/"), home: Path | None = None) -> HardwareFacts:
    """Read the facts of the machine whose file system is at ``root``."""
    cpu = parse_cpuinfo(_read(root, "proc/cpuinfo"))
    if cpu["arch"] == UNKNOWN and root == Path("/"):
        cpu["arch"] = platform.machine() or UNKNOWN
    total, available = parse_meminfo(_read(root, "proc/meminfo"))
    compatible = tuple(
        s for s in _read(root, "proc/device-tree/compatible").split("\0") if s.strip()
    )
    dt_model = _read(root, "proc/device-tree/model").replace("\0", "").strip()
    nvidia = _nvidia_gpus(root)
    drm, intel = _drm_gpus(root)
    disk = 0
    target = home if home is not None else root
    with contextlib.suppress(OSError):
        probe_at = target
        while not probe_at.exists() and probe_at != probe_at.parent:
            probe_at = probe_at.parent
        disk = shutil.disk_usage(probe_at).free
    tegra = _read(root, "etc/nv_tegra_release").splitlines()
    return HardwareFacts(
        **cpu,
        mem_total_bytes=total,
        mem_available_bytes=available,
        cgroup_limit_bytes=_cgroup_limit(root),
        dt_model=dt_model,
        dt_compatible=compatible,
        tegra_release=tegra[0].strip() if tegra else "",
        gpus=tuple(nvidia + drm),
        intel_igpu=intel,
        disk_free_bytes=disk,
    )
