"""Device profiles: what a class of hardware can do (bandwidth, accelerator, memory reserve)."""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.hardware.facts import HardwareFacts

GIB = 1 << 30


def _builtin_dir() -> Path:
    """The repository's hw-profiles/ in a checkout; <prefix>/share/appliance/hw-profiles once the
    wheel is installed (the image)."""
    checkout = Path(__file__).resolve().parents[2] / "hw-profiles"
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share/appliance/hw-profiles"


BUILTIN_DIR = _builtin_dir()
RPI5_MODELS = ("Raspberry Pi 5", "Raspberry Pi 500", "Compute Module 5")


@dataclass(frozen=True)
class HardwareProfile:
    id: str
    name: str
    accelerator: str = "cpu"
    bandwidth_gbps: float = 20.0
    reserve_bytes: int = GIB
    efficiency: float = 0.55
    chat_floor_tps: float = 5.0
    unified_memory: bool = False
    vram_default_bytes: int = 0
    fallback: bool = False
    match: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def specificity(self) -> int:
        return len(self.match)

    def as_dict(self) -> dict[str, Any]:
        """What the hardware report shows: every field but the match rules."""
        data = asdict(self)
        data.pop("match")
        return data


GENERIC = HardwareProfile(
    id="generic",
    name="Unknown hardware (conservative defaults)",
    fallback=True,
    source="conservative defaults until the hardware is detected",
)


def parse_profile(data: dict[str, Any]) -> HardwareProfile:
    return HardwareProfile(
        id=str(data["id"]),
        name=str(data.get("name", data["id"])),
        accelerator=str(data.get("accelerator", "cpu")),
        bandwidth_gbps=float(data["bandwidth_gbps"]),
        reserve_bytes=int(float(data.get("reserve_gib", 1.0)) * GIB),
        efficiency=float(data.get("efficiency", 0.55)),
        chat_floor_tps=float(data.get("chat_floor_tps", 5.0)),
        unified_memory=bool(data.get("unified_memory", False)),
        vram_default_bytes=int(float(data.get("vram_default_gib", 0)) * GIB),
        fallback=bool(data.get("fallback", False)),
        match=dict(data.get("match", {})),
        source=str(data.get("source", "")),
    )


def load_profiles(dirs: Iterable[Path] = (BUILTIN_DIR,)) -> list[HardwareProfile]:
    """Profiles from each folder in order; a later folder's profile replaces one with its id."""
    by_id: dict[str, HardwareProfile] = {}
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                profile = parse_profile(tomllib.loads(path.read_text()))
            except (KeyError, ValueError, tomllib.TOMLDecodeError) as exc:
                raise ValueError(f"{path}: not a valid hardware profile: {exc}") from None
            by_id[profile.id] = profile
    return list(by_id.values())


def _is_super(facts: HardwareFacts) -> bool:
    return facts.dt_model.endswith("Super") or any(
        c.endswith("-super") for c in facts.dt_compatible
    )


def _compatible_parts(facts: HardwareFacts) -> set[str]:
    parts = set(facts.dt_compatible)
    for entry in facts.dt_compatible:
        vendor, _, rest = entry.partition(",")
        parts.update(f"{vendor},{piece}" for piece in rest.split("+"))
    return parts


def rule_holds(rule: str, expected: Any, facts: HardwareFacts) -> bool:
    gib = facts.mem_total_bytes / GIB
    checks: dict[str, Callable[[], bool]] = {
        "arch": lambda: facts.arch == expected,
        "cpu_vendor": lambda: facts.cpu_vendor == expected,
        "cpu_family": lambda: facts.cpu_family == expected,
        "cpu_model_number": lambda: facts.cpu_model_number == expected,
        "cpu_model_regex": lambda: re.search(expected, facts.cpu_model) is not None,
        "flags_all": lambda: set(expected) <= set(facts.cpu_flags),
        "flags_none": lambda: not set(expected) & set(facts.cpu_flags),
        "compatible_any": lambda: bool(set(expected) & _compatible_parts(facts)),
        "super": lambda: _is_super(facts) == expected,
        "rpi5": lambda: (
            (facts.dt_model.startswith(RPI5_MODELS) or "brcm,bcm2712" in facts.dt_compatible)
            == expected
        ),
        "nvidia_gpu": lambda: any(g.vendor == "nvidia" for g in facts.gpus) == expected,
        "mem_min_gib": lambda: gib >= expected,
        "mem_max_gib": lambda: gib < expected,
    }
    if rule not in checks:
        raise ValueError(f"unknown match rule {rule!r}; see hw-profiles/README.md")
    return bool(checks[rule]())


def matches(profile: HardwareProfile, facts: HardwareFacts) -> bool:
    return all(rule_holds(rule, value, facts) for rule, value in profile.match.items())


def best_profile(facts: HardwareFacts, profiles: list[HardwareProfile]) -> HardwareProfile:
    """The most specific matching profile; fallbacks only when nothing specific matches."""
    candidates = [p for p in profiles if matches(p, facts)]
    if not candidates:
        return GENERIC
    return max(candidates, key=lambda p: (not p.fallback, p.specificity))
