"""Fixture roots written as the kernel shows them: /proc text layouts, NUL-terminated DT strings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

GIB = 1 << 30
X86_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat sse sse2 ht syscall nx lm"
)


def x86_cpuinfo(vendor: str, family: int, model: int, name: str, flags: str, cores: int) -> str:
    blocks = []
    for i in range(cores):
        blocks.append(
            f"processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
            f"model name\t: {name}\nstepping\t: 0\ncpu MHz\t\t: 800.000\ncache size\t: 6144 KB\n"
            f"flags\t\t: {X86_FLAGS} {flags}\nbogomips\t: 1612.80\n"
        )
    return "\n".join(blocks) + "\n"


def arm_cpuinfo(cores: int, part: str, model: str = "") -> str:
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 "
        f"crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: {part}\nCPU revision\t: 1\n"
        for i in range(cores)
    ]
    tail = (
        f"\nRevision\t: d04170\nSerial\t\t: 1a2b3c4d5e6f7a8b\nModel\t\t: {model}\n" if model else ""
    )
    return "\n".join(blocks) + tail


def meminfo(total_gib: float, available_gib: float) -> str:
    total = int(total_gib * GIB / 1024)
    available = int(available_gib * GIB / 1024)
    return (
        f"MemTotal:       {total:>8} kB\nMemFree:        {available // 2:>8} kB\n"
        f"MemAvailable:   {available:>8} kB\nBuffers:           81236 kB\n"
        f"Cached:          1834524 kB\nSwapCached:            0 kB\n"
    )


@dataclass
class Machine:
    cpuinfo: str
    total_gib: float
    available_gib: float
    dt_model: str = ""
    dt_compatible: tuple[str, ...] = ()
    tegra: str = ""
    nvidia_gpus: tuple[str, ...] = ()
    cgroup_max: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def write(self, root: Path) -> Path:
        files = {
            "proc/cpuinfo": self.cpuinfo,
            "proc/meminfo": meminfo(self.total_gib, self.available_gib),
            **self.extra,
        }
        if self.dt_model:
            files["proc/device-tree/model"] = self.dt_model + "\0"
        if self.dt_compatible:
            files["proc/device-tree/compatible"] = "".join(c + "\0" for c in self.dt_compatible)
        if self.tegra:
            files["etc/nv_tegra_release"] = self.tegra + "\n"
        if self.nvidia_gpus:
            files["proc/driver/nvidia/version"] = (
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14\n"
            )
            for i, model in enumerate(self.nvidia_gpus):
                files[f"proc/driver/nvidia/gpus/0000:0{i + 1}:00.0/information"] = (
                    f"Model: \t\t {model}\nIRQ:   \t\t 139\nGPU UUID: \t GPU-1234\n"
                    f"Video BIOS: \t 95.07.36.00.03\nBus Type: \t PCIe\n"
                )
        if self.cgroup_max:
            files["sys/fs/cgroup/memory.max"] = self.cgroup_max + "\n"
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return root


TEGRA = (
    "# R36 (release), REVISION: 4.7, GCID: 42132812, BOARD: generic, EABI: aarch64, "
    "DATE: Thu Sep 18 22:54:44 UTC 2025"
)


def jetson(compatible: str, model: str, total: float) -> Machine:
    board = (
        f"nvidia,p3768-0000+{compatible.split(',')[1]}"
        if "p3767" in compatible
        else (f"nvidia,p3737-0000+{compatible.split(',')[1]}")
    )
    compat = (board, compatible.removesuffix("-super"), "nvidia,tegra234")
    return Machine(
        arm_cpuinfo(6, "0xd42"),
        total,
        total * 0.8,
        dt_model=model,
        dt_compatible=compat,
        tegra=TEGRA,
    )


def pi5(total: float) -> Machine:
    return Machine(
        arm_cpuinfo(4, "0xd0b", "Raspberry Pi 5 Model B Rev 1.0"),
        total,
        total * 0.85,
        dt_model="Raspberry Pi 5 Model B Rev 1.0",
        dt_compatible=("raspberrypi,5-model-b", "brcm,bcm2712"),
    )


def n100(name: str = "Intel(R) N100") -> Machine:
    return Machine(
        x86_cpuinfo("GenuineIntel", 6, 190, name, "avx avx2 fma f16c avx_vnni", 4), 16, 14
    )


MACHINES: dict[str, Machine] = {
    "jetson-orin-nano-4gb": jetson(
        "nvidia,p3767-0004", "NVIDIA Jetson Orin Nano Developer Kit", 3.5
    ),
    "jetson-orin-nano-8gb": jetson(
        "nvidia,p3767-0003", "NVIDIA Jetson Orin Nano Developer Kit", 7.4
    ),
    "jetson-orin-nano-super": jetson(
        "nvidia,p3767-0005-super",
        "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
        7.4,
    ),
    "jetson-orin-nx-8gb": jetson("nvidia,p3767-0001", "NVIDIA Jetson Orin NX Developer Kit", 7.4),
    "jetson-orin-nx-16gb": jetson("nvidia,p3767-0000", "NVIDIA Jetson Orin NX Developer Kit", 15),
    "jetson-agx-orin-32gb": jetson("nvidia,p3701-0004", "Jetson AGX Orin", 29.8),
    "jetson-agx-orin-64gb": jetson("nvidia,p3701-0005", "Jetson AGX Orin", 61),
    "rpi5-4gb": pi5(3.9),
    "rpi5-8gb": pi5(7.9),
    "rpi5-16gb": pi5(15.8),
    "intel-n100": n100(),
    "intel-i3-n305": n100("Intel(R) Core(TM) i3-N305"),
    "amd-ryzen-7040": Machine(
        x86_cpuinfo(
            "AuthenticAMD",
            25,
            116,
            "AMD Ryzen 7 7840HS w/ Radeon 780M Graphics",
            "avx avx2 fma avx512f avx512_vnni avx512_bf16",
            16,
        ),
        32,
        28,
    ),
    "x86-nvidia": Machine(
        x86_cpuinfo(
            "GenuineIntel", 6, 151, "12th Gen Intel(R) Core(TM) i5-12400", "avx avx2 fma", 12
        ),
        32,
        29,
        nvidia_gpus=("NVIDIA GeForce RTX 4060",),
    ),
    "generic-x86_64": Machine(
        x86_cpuinfo(
            "GenuineIntel", 6, 142, "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz", "avx avx2 fma", 8
        ),
        8,
        6,
    ),
    "generic-arm64": Machine(
        arm_cpuinfo(6, "0xd08"),
        4,
        3.2,
        dt_model="Pine64 RockPro64 v2.1",
        dt_compatible=("pine64,rockpro64-v2.1", "rockchip,rk3399"),
    ),
}
