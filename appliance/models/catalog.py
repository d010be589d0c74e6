"""The catalog of models that exist: architecture figures, files, sizes, hashes and sources.

Plain data; no aiohttp, no pluggy. ``catalog.toml`` beside this file is the built-in catalog.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOG_PATH = Path(__file__).with_name("catalog.toml")
KINDS = ("chat", "embed", "transcribe", "classify", "vision", "projector")


@dataclass(frozen=True)
class Quant:
    name: str
    file: str
    size: int
    sha256: str = ""
    sources: tuple[str, ...] = ()
    convert: str = ""
    """The converter that turns the source into this file ("" when the source is the file)."""

    @property
    def pinned(self) -> bool:
        return len(self.sha256) == 64


@dataclass(frozen=True)
class CatalogModel:
    id: str
    name: str
    kind: str
    family: str
    parameters: str
    params: float
    license: str
    default_quant: str
    quants: tuple[Quant, ...]
    layers: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    embedding_length: int = 0
    vocab: int = 0
    context: int = 0
    default: bool = False
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def quant(self, name: str | None = None) -> Quant:
        wanted = (name or self.default_quant).upper()
        for quant in self.quants:
            if quant.name.upper() == wanted:
                return quant
        known = ", ".join(q.name for q in self.quants)
        raise KeyError(f"{self.id} has no quantization {name!r}; known: {known}")


@dataclass(frozen=True)
class Catalog:
    models: tuple[CatalogModel, ...]

    def get(self, model_id: str) -> CatalogModel:
        for model in self.models:
            if model.id == model_id or model.id == model_id.removesuffix(":latest"):
                return model
        raise KeyError(f"no model {model_id!r} in the catalog; see `appliance models list --all`")

    def defaults(self) -> list[CatalogModel]:
        return [m for m in self.models if m.default]

    def of_kind(self, kind: str) -> list[CatalogModel]:
        return [m for m in self.models if m.kind == kind]

    def find_file(self, sha256: str) -> tuple[CatalogModel, Quant] | None:
        for model in self.models:
            for quant in model.quants:
                if quant.sha256 and quant.sha256 == sha256:
                    return model, quant
        return None


def _parse(data: dict[str, Any]) -> Catalog:
    models = []
    for raw in data.get("model", []):
        raw = dict(raw)
        if raw.get("kind") not in KINDS:
            raise ValueError(f"catalog model {raw.get('id')!r}: kind must be one of {KINDS}")
        quants = tuple(
            Quant(
                name=q["name"],
                file=q["file"],
                size=int(q["size"]),
                sha256=q.get("sha256", ""),
                sources=tuple(q.get("sources", ())),
                convert=q.get("convert", ""),
            )
            for q in raw.pop("quant")
        )
        known = set(CatalogModel.__dataclass_fields__) - {"quants", "extra"}
        extra = {k: raw.pop(k) for k in list(raw) if k not in known}
        models.append(CatalogModel(quants=quants, extra=extra, **raw))
    return Catalog(tuple(models))


@lru_cache(maxsize=4)
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    with path.open("rb") as fh:
        return _parse(tomllib.load(fh))
