"""Overload against the real server and model, round after round: N+1 streams at a box that holds
N (slots + places in line) give N answers and one 503 with Retry-After before any stream, and
the server's memory stays flat across the rounds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.live import LiveBox

pytestmark = [pytest.mark.model, pytest.mark.slow]

SLOTS, QUEUE = 2, 2
HOLDS = SLOTS + QUEUE
ROUNDS = 6


async def one_stream(session: aiohttp.ClientSession, url: str) -> tuple[int, str, bool]:
    body = {
        "model": "smollm2:135m",
        "messages": [{"role": "user", "content": "Tell a long story about a lighthouse."}],
        "max_tokens": 48,
        "temperature": 0,
        "stream": True,
    }
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        text = await response.text()
        return response.status, response.headers.get("Retry-After", ""), "[DONE]" in text


async def test_rounds_of_one_too_many_streams(tmp_path: Path) -> None:
    env = {"APPLIANCE_PARALLEL": str(SLOTS), "APPLIANCE_QUEUE_SIZE": str(QUEUE)}
    with LiveBox(tmp_path / "home", plugins="llama", env=env) as box:
        rss = []
        async with aiohttp.ClientSession() as session:
            await one_stream(session, box.url)  # load the model
            for _ in range(ROUNDS):
                results = await asyncio.gather(
                    *(one_stream(session, box.url) for _ in range(HOLDS + 1))
                )
                answered = [r for r in results if r[0] == 200]
                refused = [r for r in results if r[0] == 503]
                assert len(answered) == HOLDS and all(done for _, _, done in answered), results
                assert len(refused) == 1 and refused[0][1].isdigit(), results
                rss.append(box.rss_bytes())
            async with session.get(box.url + "/metrics") as scraped:
                metrics = await scraped.text()
            async with session.get(box.url + "/appliance/hardware") as report:
                recent = (await report.json())["recent_tokens_per_second"]
        assert recent["smollm2:135m"] > 1
        assert 'appliance_model_loads_total{model="smollm2:135m"} 1.0' in metrics
        assert f'appliance_model_slots{{model="smollm2:135m"}} {float(SLOTS)}' in metrics
        refused = f'route="/v1/chat/completions",status="503"}} {float(ROUNDS)}'
        assert refused in metrics, metrics
        growth = rss[-1] - rss[1]
        print(f"RSS per round (MiB): {[round(r / 2**20, 1) for r in rss]}")
        assert growth < 16 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB over {ROUNDS - 2} rounds"
