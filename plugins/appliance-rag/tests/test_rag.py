from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from appliance_rag.chunking import chunk_sections
from appliance_rag.index import bm25, chunks_by_id, fuse
from appliance_rag.loaders import LOADERS

from appliance.keys import APPLIANCE
from tests.fixtures import ClientFactory, bearer, new_token

Corpus = Callable[[Path], dict[str, Path]]


BY_SUFFIX = {s: loader for loader in LOADERS for s in loader.suffixes}


def test_every_parser_reads_real_files(tmp_path: Path, corpus: Corpus) -> None:
    files = corpus(tmp_path)
    text = {
        kind: " ".join(s.text for s in BY_SUFFIX[p.suffix].load(p)) for kind, p in files.items()
    }
    assert "TunnelBear7" in text["md"] and "Magpie" in text["txt"]
    assert "Harbour-Guest" in text["html"] and "var x" not in text["html"]
    assert "24 December" in text["pdf"] and "2 January" in text["pdf"]
    assert "badge" in text["docx"] and "Helpdesk" in text["csv"] and "Vault" in text["eml"]
    pdf_pages = [s.location["page"] for s in BY_SUFFIX[".pdf"].load(files["pdf"])]
    assert pdf_pages == [1, 2]
    md = list(BY_SUFFIX[".md"].load(files["md"]))
    assert [s.title for s in md] == ["VPN", "Passwords"] and md[1].location["lines"] == "5-7"
    docx_sections = list(BY_SUFFIX[".docx"].load(files["docx"]))
    assert docx_sections[0].title == "First day"
    assert BY_SUFFIX[".eml"].load(files["eml"])[0].title == "Nightly backup"  # type: ignore[index]


def test_chunks_respect_size_overlap_and_keep_location() -> None:
    from appliance.capabilities.retrieve import LoadedSection

    text = "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(10))
    chunks = chunk_sections([LoadedSection(text, "Title", {"page": 3})], size=500, overlap=80)
    assert len(chunks) > 3 and all(len(c.text) <= 600 for c in chunks)
    assert all(c.title == "Title" and c.location == {"page": 3} for c in chunks)
    assert chunks[1].text.split("\n\n")[0] in chunks[0].text  # the overlap carried forward


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = dict(fuse([1, 2, 3], [3, 1, 4]))
    assert max(fused, key=fused.get) in (1, 3)  # type: ignore[arg-type]
    assert fused[1] > fused[2] and fused[3] > fused[4]


async def rag_client(make_client: ClientFactory, **kw: Any) -> TestClient:  # type: ignore[type-arg]
    return await make_client(load_plugins=("echo", "rag"), embed_model="echo-embed", **kw)


async def wait_ready(client: TestClient, name: str) -> dict[str, Any]:  # type: ignore[type-arg]
    for _ in range(200):
        status = await (await client.get(f"/appliance/rag/collections/{name}")).json()
        if status["status"] == "ready":
            return dict(status)
        await asyncio.sleep(0.05)
    raise AssertionError(f"collection {name} never became ready: {status}")


async def test_collection_ingests_searches_and_reports_bad_files(
    make_client: ClientFactory, tmp_path: Path, corpus: Corpus
) -> None:
    docs = tmp_path / "share"
    corpus(docs)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    client = await rag_client(make_client)
    created = await client.post(
        "/appliance/rag/collections", json={"name": "office", "paths": [str(docs)]}
    )
    assert created.status == 201, await created.text()
    status = await wait_ready(client, "office")
    assert status["files"] == 8 and status["chunks"] >= 8
    assert [e["path"] for e in status["errors"]] == [str(docs / "broken.pdf")]
    hits = await (
        await client.post(
            "/appliance/rag/query",
            json={"collection": "office", "query": "What is the guest wifi network called?"},
        )
    ).json()
    assert hits["results"][0]["path"].endswith("wifi.html")
    assert hits["results"][0]["score"] > 0 and "text" in hits["results"][0]
    punctuation = await client.post(
        "/appliance/rag/query",
        json={"collection": "office", "query": 'printer "Magpie" (floor-2)?*'},
    )
    assert punctuation.status == 200
    assert (await punctuation.json())["results"][0]["path"].endswith("printers.txt")
    metrics = await (await client.get("/metrics")).text()
    assert f'appliance_rag_chunks{{collection="office"}} {float(status["chunks"])}' in metrics
    assert 'appliance_rag_ingest_remaining{collection="office"} 0.0' in metrics


async def test_incremental_reindex_change_delete_rename(
    make_client: ClientFactory, tmp_path: Path, corpus: Corpus
) -> None:
    docs = tmp_path / "share"
    files = corpus(docs)
    client = await rag_client(make_client)
    await client.post("/appliance/rag/collections", json={"name": "kb", "paths": [str(docs)]})
    await wait_ready(client, "kb")
    db = client.app[APPLIANCE].db
    before = db.read_sync(lambda d: {r["path"]: r["indexed_at"] for r in d.table("rag_files").rows})
    files["md"].write_text("# VPN\n\nThe new client is called WireGuard9.\n")
    os.utime(files["md"], (1, 1))
    files["csv"].unlink()
    files["txt"].rename(docs / "printers-renamed.txt")
    await client.post("/appliance/rag/collections/kb/reindex")
    await asyncio.sleep(0.1)
    status = await wait_ready(client, "kb")
    after = db.read_sync(lambda d: {r["path"]: r["indexed_at"] for r in d.table("rag_files").rows})
    assert str(files["csv"]) not in after and str(files["txt"]) not in after
    assert str(docs / "printers-renamed.txt") in after
    assert after[str(files["html"])] == before[str(files["html"])]  # untouched: not re-read
    assert after[str(files["md"])] > before[str(files["md"])]
    assert status["progress"]["files_total"] == 2
    hits = await (
        await client.post("/appliance/rag/query", json={"collection": "kb", "query": "WireGuard9"})
    ).json()
    assert hits["results"][0]["path"].endswith("vpn.md")
    old = await (
        await client.post("/appliance/rag/query", json={"collection": "kb", "query": "TunnelBear7"})
    ).json()
    assert all("TunnelBear7" not in r["text"] for r in old["results"])


async def test_paths_are_confined(make_client: ClientFactory, tmp_path: Path) -> None:
    docs = tmp_path / "share"
    docs.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("The root password is hunter2.")
    (docs / "escape.txt").symlink_to(secret)
    (docs / "ok.txt").write_text("Nothing secret here.")
    client = await rag_client(make_client)
    for bad in ("relative/path", f"{docs}/../share", "/does/not/exist"):
        response = await client.post(
            "/appliance/rag/collections", json={"name": "bad", "paths": [bad]}
        )
        assert response.status == 400, bad
    await client.post("/appliance/rag/collections", json={"name": "safe", "paths": [str(docs)]})
    status = await wait_ready(client, "safe")
    assert status["files"] == 1
    assert any("escape.txt" in path for path, _ in status["progress"]["refused"])
    hits = await (
        await client.post(
            "/appliance/rag/query", json={"collection": "safe", "query": "root password"}
        )
    ).json()
    assert all("hunter2" not in r["text"] for r in hits["results"])


async def test_roots_outside_the_allowed_folders_are_refused(
    make_client: ClientFactory, tmp_path: Path, home: Path
) -> None:
    client = await rag_client(make_client)
    link = tmp_path / "share-link"
    link.symlink_to("/etc")
    for bad in ("/etc", "/etc/passwd", str(home), str(link), "/"):
        response = await client.post(
            "/appliance/rag/collections", json={"name": "leak", "paths": [bad]}
        )
        assert response.status == 403, (bad, await response.text())
        message = (await response.json())["error"]["message"]
        assert "rag_roots" in message or "box's own files" in message
    assert (await client.get("/appliance/rag/collections/leak")).status == 404


async def test_roles_and_concurrent_queries_during_ingestion(
    make_client: ClientFactory, tmp_path: Path, corpus: Corpus
) -> None:
    docs = tmp_path / "share"
    corpus(docs)
    for i in range(40):
        (docs / f"note{i}.md").write_text(f"# Note {i}\n\nItem {i} is stored in cupboard {i}.\n")
    client = await rag_client(make_client, host="0.0.0.0")
    admin, user = new_token(client, "admin"), new_token(client, "user")
    refused = await client.post(
        "/appliance/rag/collections",
        headers=bearer(user),
        json={"name": "notes", "paths": [str(docs)]},
    )
    assert refused.status == 403
    created = await client.post(
        "/appliance/rag/collections",
        headers=bearer(admin),
        json={"name": "notes", "paths": [str(docs)]},
    )
    assert created.status == 201
    # Fewer than the embedder's queue (16) minus the ingestion's own job, so none is refused.
    queries = [
        client.post(
            "/appliance/rag/query",
            headers=bearer(user),
            json={"collection": "notes", "query": f"cupboard {i}"},
        )
        for i in range(12)
    ]
    responses = await asyncio.gather(*queries)
    assert all(r.status == 200 for r in responses), [
        (r.status, await r.text()) for r in responses if r.status != 200
    ]
    await wait_ready_with(client, "notes", bearer(user))
    hit = await (
        await client.post(
            "/appliance/rag/query",
            headers=bearer(user),
            json={"collection": "notes", "query": "cupboard 17", "top_k": 50},
        )
    ).json()
    # The echo embedder's vectors carry no meaning, so only the lexical half ranks here;
    # ranking quality with real embeddings is checked in test_cited_answer and bench/rag.py.
    assert any(r["path"].endswith("note17.md") for r in hit["results"])
    lexical = client.app[APPLIANCE].db.read_sync(lambda d: bm25(d, "notes", "cupboard 17", 3))
    top = client.app[APPLIANCE].db.read_sync(lambda d: chunks_by_id(d, lexical[:1]))
    assert next(iter(top.values()))["path"].endswith("note17.md")
    assert (
        await client.delete("/appliance/rag/collections/notes", headers=bearer(user))
    ).status == 403
    assert (
        await client.delete("/appliance/rag/collections/notes", headers=bearer(admin))
    ).status == 200


async def wait_ready_with(client: TestClient, name: str, headers: dict[str, str]) -> None:  # type: ignore[type-arg]
    for _ in range(400):
        status = await (
            await client.get(f"/appliance/rag/collections/{name}", headers=headers)
        ).json()
        if status["status"] == "ready":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never ready")


@pytest.mark.parametrize("missing", ["query", "collection"])
async def test_bad_queries(make_client: ClientFactory, missing: str) -> None:
    client = await rag_client(make_client)
    body = {"collection": "x", "query": "y"}
    del body[missing]
    assert (await client.post("/appliance/rag/query", json=body)).status == 400
    unknown = await client.post("/appliance/rag/query", json={"collection": "nope", "query": "y"})
    assert unknown.status == 404


def test_cli_add_status_reindex_remove(tmp_path: Path, corpus: Corpus) -> None:
    from click.testing import CliRunner

    from appliance.cli.main import cli

    docs = tmp_path / "share"
    corpus(docs)
    env = {
        "APPLIANCE_HOME": str(tmp_path / "home"),
        "APPLIANCE_LOAD_PLUGINS": "echo,rag",
        "APPLIANCE_EMBED_MODEL": "echo-embed",
        "APPLIANCE_CALIBRATE_AT_START": "false",
        "APPLIANCE_RAG_ROOTS": str(tmp_path),
    }
    runner = CliRunner()
    added = runner.invoke(cli, ["rag", "add", "office", str(docs)], env=env)
    assert added.exit_code == 0, added.output
    assert "office: 7 files" in added.output
    listed = runner.invoke(cli, ["rag", "list"], env=env)
    assert "office" in listed.output and "ready" in listed.output
    (docs / "new.md").write_text("# New\n\nA new page.\n")
    again = runner.invoke(cli, ["rag", "reindex", "office"], env=env)
    assert "1 changed files re-read" in again.output, again.output
    shown = runner.invoke(cli, ["rag", "status", "office"], env=env)
    assert json.loads(shown.output)["files"] == 8
    assert runner.invoke(cli, ["rag", "remove", "office"], env=env).exit_code == 0
    missing = runner.invoke(cli, ["rag", "status", "office"], env=env)
    assert missing.exit_code != 0 and "no collection" in missing.output


async def test_uploaded_files_join_a_collection(make_client: ClientFactory, tmp_path: Path) -> None:
    import aiohttp

    client = await rag_client(make_client)
    created = await client.post("/appliance/rag/collections", json={"name": "inbox"})
    assert created.status == 201
    await wait_ready(client, "inbox")
    form = aiohttp.FormData()
    form.add_field("file", b"# Parking\n\nVisitors park in bay 12.\n", filename="parking.md")
    uploaded = await client.post("/appliance/rag/collections/inbox/files", data=form)
    assert uploaded.status == 201 and (await uploaded.json())["uploaded"] == ["parking.md"]
    await asyncio.sleep(0.1)
    status = await wait_ready(client, "inbox")
    assert status["files"] == 1
    hits = await (
        await client.post(
            "/appliance/rag/query", json={"collection": "inbox", "query": "where do visitors park"}
        )
    ).json()
    assert hits["results"][0]["path"].endswith("parking.md")
    bad = aiohttp.FormData()
    bad.add_field("file", b"MZ\x90\x00", filename="tool.exe")
    refused = await client.post("/appliance/rag/collections/inbox/files", data=bad)
    assert refused.status == 400
    assert "rag" in client.app[APPLIANCE].registry.retrievers
