"""Predicted versus measured decode speed of the default chat model on this machine.

Bandwidth comes from a copy benchmark (numpy, large arrays: read + write bytes per second);
the prediction is the fit module's formula with the profile's efficiency; the measurement is
llama.cpp's own decode timing on the same model. Run: .venv/bin/python -m bench.fit
"""

from __future__ import annotations

import time

import llama_cpp
import numpy as np

from appliance.hardware.facts import probe
from appliance.hardware.fit import KV_TOKENS_READ, kv_bytes
from appliance.hardware.profiles import best_profile, load_profiles
from appliance.models.catalog import load_catalog
from appliance.models.store import ModelStore
from bench.common import MODELS_DIR, median

MODEL = "smollm2:135m"


def copy_bandwidth_gbps(size_mb: int = 512, rounds: int = 5) -> float:
    src = np.ones(size_mb * 1024 * 1024 // 8)
    dst = np.empty_like(src)
    speeds = []
    for _ in range(rounds):
        started = time.perf_counter()
        np.copyto(dst, src)
        speeds.append(2 * src.nbytes / (time.perf_counter() - started) / 1e9)
    return median(speeds)


def measured_decode_tps(path: str, tokens: int = 128) -> float:
    llm = llama_cpp.Llama(path, n_ctx=2048, n_threads=2, verbose=False)
    runs = []
    for _ in range(3):
        llama_cpp.llama_perf_context_reset(llm.ctx)
        llm.create_completion("Once upon a time", max_tokens=tokens, temperature=0)
        perf = llama_cpp.llama_perf_context(llm.ctx)
        runs.append(perf.n_eval / (perf.t_eval_ms / 1000))
    llm.close()
    return median(runs)


def main() -> None:
    catalog = load_catalog()
    model = catalog.get(MODEL)
    quant = model.quant()
    path = ModelStore(MODELS_DIR, catalog).verified_path(model)
    profile = best_profile(probe(), load_profiles())
    bandwidth = copy_bandwidth_gbps()
    read = quant.size + kv_bytes(model, KV_TOKENS_READ)
    predicted_profile = profile.efficiency * profile.bandwidth_gbps * 1e9 / read
    predicted_measured_bw = profile.efficiency * bandwidth * 1e9 / read
    measured = measured_decode_tps(str(path))
    print(
        f"profile {profile.id}: {profile.bandwidth_gbps:g} GB/s assumed; copy benchmark "
        f"{bandwidth:.1f} GB/s measured"
    )
    print(f"{MODEL} {quant.name}: {read / 1e6:.0f} MB read per token")
    print(f"decode tok/s  predicted (profile bandwidth): {predicted_profile:7.1f}")
    print(f"decode tok/s  predicted (measured bandwidth): {predicted_measured_bw:6.1f}")
    print(f"decode tok/s  measured (llama.cpp timings):   {measured:6.1f}")
    print(
        f"ratio measured / predicted (measured bandwidth): {measured / predicted_measured_bw:.2f}"
    )
    print(
        f"implied efficiency on this machine: {measured * read / (bandwidth * 1e9):.2f} "
        f"(profile assumes {profile.efficiency})"
    )


if __name__ == "__main__":
    main()
