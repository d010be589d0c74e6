"""Every device class from fixture roots: facts, profile, a choice that fits, and the CLI/API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.cli.main import cli
from appliance.hardware.facts import GPU, HardwareFacts, parse_cpuinfo, probe
from appliance.hardware.fit import PooledMemory, choose, estimate
from appliance.hardware.profiles import best_profile, load_profiles
from appliance.models.catalog import load_catalog
from tests.fixtures import ClientFactory
from tests.hardware.fixtures import GIB, MACHINES, Machine, x86_cpuinfo

PROFILES = load_profiles()
CATALOG = load_catalog()


@pytest.mark.parametrize("expected", sorted(MACHINES))
def test_fixture_root_selects_its_profile_and_a_choice_that_fits(
    expected: str, tmp_path: Path
) -> None:
    facts = probe(MACHINES[expected].write(tmp_path), home=tmp_path)
    profile = best_profile(facts, PROFILES)
    assert profile.id == expected
    choice = choose(profile, facts, CATALOG)
    assert choice.chat is not None
    assert choice.total_bytes <= facts.usable_memory_bytes - profile.reserve_bytes or (
        choice.chat.total_bytes <= (profile.vram_default_bytes or 0)
    )
    assert choice.chat.predicted_tps >= profile.chat_floor_tps
    assert any(choice.chat.model in r for r in choice.reasons)


def test_facts_read_kernel_layouts(tmp_path: Path) -> None:
    facts = probe(MACHINES["jetson-orin-nano-super"].write(tmp_path))
    assert facts.arch == "aarch64" and facts.cpu_cores == 6
    assert facts.dt_model.endswith("Super") and "\0" not in facts.dt_model
    assert facts.dt_compatible == (
        "nvidia,p3768-0000+p3767-0005-super",
        "nvidia,p3767-0005",
        "nvidia,tegra234",
    )
    assert facts.tegra_release.startswith("# R36 (release), REVISION: 4.7")
    assert abs(facts.mem_total_bytes - 7.4 * GIB) < 1024 * 1024
    gpu = probe(MACHINES["x86-nvidia"].write(tmp_path / "n"))
    assert gpu.gpus == (GPU("nvidia", "NVIDIA GeForce RTX 4060", 0),)
    pi = probe(MACHINES["rpi5-8gb"].write(tmp_path / "p"))
    assert pi.cpu_part == "0xd0b" and pi.cpu_model == "Raspberry Pi 5 Model B Rev 1.0"


def test_missing_and_garbled_files_degrade_to_unknown(tmp_path: Path) -> None:
    empty = probe(tmp_path)
    assert empty.cpu_cores == 0 and empty.mem_total_bytes == 0 and empty.dt_compatible == ()
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_bytes(b"\xff\xfe garbage MemTotal: lots\n")
    (tmp_path / "proc/cpuinfo").write_text("::::\nflags\n")
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/memory.max").write_text("not a number\n")
    garbled = probe(tmp_path)
    assert garbled.mem_total_bytes == 0 and garbled.cgroup_limit_bytes is None
    assert best_profile(garbled, PROFILES).fallback


def test_container_memory_limit_is_honoured(tmp_path: Path) -> None:
    machine = Machine(
        x86_cpuinfo("GenuineIntel", 6, 142, "Intel(R) Xeon(R)", "avx avx2", 8),
        64,
        60,
        cgroup_max=str(3 * GIB),
    )
    facts = probe(machine.write(tmp_path))
    assert facts.cgroup_limit_bytes == 3 * GIB and facts.usable_memory_bytes == 3 * GIB
    profile = best_profile(facts, PROFILES)
    choice = choose(profile, facts, CATALOG)
    assert choice.total_bytes <= 3 * GIB - profile.reserve_bytes
    unlimited = Machine(machine.cpuinfo, 64, 60, cgroup_max="max")
    assert probe(unlimited.write(tmp_path / "u")).cgroup_limit_bytes is None


def test_reasons_explain_a_memory_rejection(tmp_path: Path) -> None:
    facts = probe(MACHINES["rpi5-4gb"].write(tmp_path))
    choice = choose(best_profile(facts, PROFILES), facts, CATALOG)
    text = " ".join(choice.reasons)
    assert "would need" in text and "GiB" in text
    assert "tok/s" in text


def test_estimates_follow_the_reference_formula() -> None:
    profile = next(p for p in PROFILES if p.id == "rpi5-8gb")
    llama3b = CATALOG.get("llama3.2:3b")
    fit = estimate(llama3b, llama3b.quant("Q4_K_M"), profile, 4096)
    assert fit.kv_bytes == 2 * 28 * 4096 * 8 * 128 * 2
    assert 3.5 <= fit.predicted_tps <= 5.9  # published: 4.6-4.9 tok/s on a Pi 5
    assert fit.parked_bytes == 0, "one slot has no idle caches to park"
    slotted = estimate(llama3b, llama3b.quant("Q4_K_M"), profile, 4096, slots=4)
    assert slotted.kv_bytes == 4 * fit.kv_bytes
    assert slotted.parked_bytes == fit.kv_bytes  # one slot's context of parked caches
    assert slotted.total_bytes == fit.total_bytes + 4 * fit.kv_bytes


def facts_with_memory(total: int) -> HardwareFacts:
    return HardwareFacts(
        arch="x86_64",
        cpu_vendor="GenuineIntel",
        cpu_flags=("avx2",),
        cpu_cores=4,
        mem_total_bytes=total,
        mem_available_bytes=int(total * 0.9),
    )


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1 * GIB, max_value=96 * GIB),
    st.integers(min_value=0, max_value=48 * GIB),
    st.sampled_from([p.id for p in PROFILES if p.accelerator == "cpu"]),
)
def test_more_memory_never_yields_a_smaller_choice_and_always_fits(
    small: int, extra: int, profile_id: str
) -> None:
    profile = next(p for p in PROFILES if p.id == profile_id)
    a = choose(profile, facts_with_memory(small), CATALOG)
    b = choose(profile, facts_with_memory(small + extra), CATALOG)
    for facts, choice in ((facts_with_memory(small), a), (facts_with_memory(small + extra), b)):
        if choice.chat is not None:
            assert choice.total_bytes <= facts.usable_memory_bytes - profile.reserve_bytes
    if a.chat is not None:
        assert b.chat is not None and b.chat.params >= a.chat.params


def test_cpuinfo_parsing_of_arm_and_x86() -> None:
    arm = parse_cpuinfo("processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n")
    assert arm["arch"] == "aarch64" and arm["cpu_part"] == "0xd0b"
    x86 = parse_cpuinfo(x86_cpuinfo("AuthenticAMD", 25, 116, "AMD Ryzen", "avx2", 2))
    assert x86["arch"] == "x86_64" and x86["cpu_cores"] == 2 and x86["cpu_family"] == 25


def test_detect_cli_json(tmp_path: Path) -> None:
    root = MACHINES["rpi5-8gb"].write(tmp_path / "root")
    result = CliRunner().invoke(
        cli, ["detect", "--root", str(root), "--json", "--home", str(tmp_path / "home")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["facts"]["mem_total_bytes"] > 7 * GIB
    assert data["facts"]["mem_available_bytes"] > 6 * GIB
    assert data["profile"]["id"] == "rpi5-8gb"
    chat = data["choice"]["chat"]
    assert chat["model"] and chat["quant"] and chat["ctx"] >= 2048
    assert data["choice"]["transcribe"]["model"].startswith("whisper:")
    assert data["choice"]["embed"]["model"] == "all-minilm:l6-v2"
    assert data["choice"]["total_bytes"] > 0 and len(data["choice"]["reasons"]) >= 3
    assert any("appliance models fetch" in m["command"] for m in data["missing"])


async def test_hardware_endpoint_and_mdns_profile(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    root = MACHINES["intel-n100"].write(tmp_path / "root")
    client = await make_client(hardware_root=root)
    data = await (await client.get("/appliance/hardware")).json()
    assert data["profile"]["id"] == "intel-n100"
    assert data["choice"]["chat"]["predicted_tps"] >= 5
    record = await (await client.get("/.well-known/appliance.json")).json()
    assert record["profile"]["id"] == "intel-n100"


def test_pooled_memory_lets_a_model_too_big_for_one_box_be_chosen() -> None:
    facts = facts_with_memory(3 * GIB)
    profile = best_profile(facts, PROFILES)
    alone = choose(profile, facts, CATALOG)
    worker = PooledMemory("rpc:10.0.0.2:50052", 24 * GIB)
    pooled = choose(profile, facts, CATALOG, pooled=(worker,))
    assert alone.chat is not None and pooled.chat is not None
    assert pooled.chat.params > alone.chat.params
    assert pooled.chat.total_bytes > facts.usable_memory_bytes - profile.reserve_bytes
    assert pooled.pooled == ("rpc:10.0.0.2:50052",)
    text = " ".join(pooled.reasons)
    assert "Pooled with rpc:10.0.0.2:50052" in text
    assert "split over this box and rpc:10.0.0.2:50052" in text
    assert pooled.as_dict()["pooled"] == ["rpc:10.0.0.2:50052"]

    gone = PooledMemory("rpc:10.0.0.2:50052", 0, problem="cannot be reached")
    unreachable = choose(profile, facts, CATALOG, pooled=(gone,))
    assert unreachable.chat == alone.chat and unreachable.pooled == ()
    assert "rpc:10.0.0.2:50052: cannot be reached; not counted." in unreachable.reasons
