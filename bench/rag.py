"""Retrieval quality and speed of the RAG plugin on a real document set that ships offline with
every CPython: the language reference topics in ``pydoc_data.topics`` (79 files), with 58
labelled questions whose answer lies in a known file. Prints recall@5 and MRR for BM25 alone,
vectors alone and hybrid (RRF), ingestion rate, and query latency at corpus size and at 10,000
chunks. Run: .venv/bin/python -m bench.rag"""

from __future__ import annotations

import asyncio
import pydoc_data.topics
import statistics
import tempfile
import time
from pathlib import Path

from appliance_rag import index
from appliance_rag.loaders import LOADERS
from appliance_rag.service import Collections

from appliance.core import Appliance
from appliance.plugin_admin import load_for
from appliance.settings import load_settings
from bench.common import MODELS_DIR
from bench.rag_questions import QUESTIONS


def files_ranked(chunk_ids: list[int], paths: dict[int, str]) -> list[str]:
    seen: list[str] = []
    for chunk_id in chunk_ids:
        topic = Path(paths[chunk_id]).stem
        if topic not in seen:
            seen.append(topic)
    return seen


def score(rankings: list[list[str]], answers: list[str]) -> tuple[float, float]:
    recall = sum(a in r[:5] for r, a in zip(rankings, answers, strict=True)) / len(answers)
    mrr = sum(
        1 / (r.index(a) + 1) if a in r else 0 for r, a in zip(rankings, answers, strict=True)
    ) / len(answers)
    return recall, mrr


async def main() -> None:
    import sys

    import appliance_rag.chunking

    if len(sys.argv) > 1:  # e.g. `python -m bench.rag 500 80` to compare chunk sizes
        appliance_rag.chunking.CHUNK_SIZE = int(sys.argv[1])
        appliance_rag.chunking.CHUNK_OVERLAP = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    print(
        f"chunks of {appliance_rag.chunking.CHUNK_SIZE} characters, "
        f"{appliance_rag.chunking.CHUNK_OVERLAP} overlap"
    )
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "python-reference"
        corpus.mkdir()
        for topic, text in pydoc_data.topics.topics.items():
            (corpus / f"{topic}.txt").write_text(text)
        settings = load_settings(
            {
                "home": Path(tmp) / "home",
                "models_dir": MODELS_DIR,
                "load_plugins": ("llama", "rag"),
                "n_threads": 2,
                "calibrate_at_start": False,
            },
            environ={},
        )
        appliance = Appliance(settings, load_for(settings))
        appliance.detect()
        appliance.register_models()
        appliance.open()
        rag = Collections(appliance, list(LOADERS))
        await rag.create("py", [corpus], [])
        started = time.monotonic()
        await rag.tasks["py"]
        seconds = time.monotonic() - started
        status = await rag.get("py")
        db = appliance.db
        paths = db.read_sync(lambda d: {r["id"]: r["path"] for r in d.table("rag_chunks").rows})
        answers = [a for _, a in QUESTIONS]
        lexical, semantic, hybrid, latencies = [], [], [], []
        for question, _ in QUESTIONS:
            t0 = time.perf_counter()
            vector = (await rag.embed([question]))[0]
            b = db.read_sync(lambda d, q=question: index.bm25(d, "py", q, index.CANDIDATES))
            v = db.read_sync(lambda d, x=vector: index.vector_search(d, "py", x, index.CANDIDATES))
            fused = [i for i, _ in index.fuse(b, v)]
            latencies.append((time.perf_counter() - t0) * 1000)
            lexical.append(files_ranked(b, paths))
            semantic.append(files_ranked(v, paths))
            hybrid.append(files_ranked(fused, paths))
        print(
            f"corpus: {status['files']} files, {status['chunks']} chunks "
            f"(CPython {'.'.join(map(str, __import__('sys').version_info[:2]))} reference)"
        )
        print(
            f"ingestion: {status['files'] / seconds:.1f} files/s, "
            f"{status['chunks'] / seconds:.1f} chunks/s (parse + embed + store)"
        )
        for label, ranking in (("BM25", lexical), ("vectors", semantic), ("hybrid", hybrid)):
            recall, mrr = score(ranking, answers)
            print(f"{label:8s} recall@5 {recall:.3f}   MRR {mrr:.3f}   ({len(answers)} questions)")
        q = sorted(latencies)
        print(
            f"query latency (embed + BM25 + vectors + fusion): p50 {statistics.median(q):.1f} ms"
            f"  p95 {q[int(0.95 * (len(q) - 1))]:.1f} ms"
        )
        rows = db.read_sync(lambda d: list(d.table("rag_chunks").rows_where("collection = 'py'")))
        copies = max(1, 10_000 // max(1, len(rows)))

        def grow(d: object) -> None:
            for _ in range(copies):
                d.table("rag_chunks").insert_all(  # type: ignore[attr-defined]
                    {
                        **{
                            k: r[k]
                            for k in ("file_id", "path", "title", "location", "text", "vector")
                        },
                        "collection": "big",
                    }
                    for r in rows
                )

        db.write_sync(grow)
        big = db.read_sync(
            lambda d: d.execute(
                "select count(*) from rag_chunks where collection = 'big'"
            ).fetchone()[0]
        )
        times = []
        for question, _ in QUESTIONS[:30]:
            t0 = time.perf_counter()
            vector = (await rag.embed([question]))[0]
            b = db.read_sync(lambda d, q=question: index.bm25(d, "big", q, index.CANDIDATES))
            v = db.read_sync(lambda d, x=vector: index.vector_search(d, "big", x, index.CANDIDATES))
            index.fuse(b, v)
            times.append((time.perf_counter() - t0) * 1000)
        t = sorted(times)
        p95 = t[int(0.95 * (len(t) - 1))]
        print(f"at {big} chunks: p50 {statistics.median(t):.1f} ms  p95 {p95:.1f} ms")
        appliance.close()


if __name__ == "__main__":
    asyncio.run(main())
