"""The models on disk. Every file is checked against its sha256 before it is handed out.

Layout: ``<models_dir>/<model id>/<file>``. Files arrive through :meth:`ModelStore.add_file`,
which copies to a temporary name, hashes while copying, and renames only on a match.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError, BadRequest, NotFound
from appliance.models.catalog import Catalog, CatalogModel, Quant

CHUNK = 4 * 1024 * 1024


class IntegrityError(ApplianceError):
    """A model file's sha256 does not match the pinned one."""

    status = 500
    error_type = "model_integrity_error"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in blocks (the one helper the box and its plugins use)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def safe_dir_name(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", model_id)


@dataclass(frozen=True)
class StoredModel:
    model: CatalogModel
    quant: Quant
    path: Path
    sha256: str

    @property
    def size(self) -> int:
        return self.path.stat().st_size


class ModelStore:
    def __init__(self, root: Path, catalog: Catalog) -> None:
        self.root = root
        self.catalog = catalog
        self._verified: dict[tuple[int, int, int], str] = {}
        self._lock = threading.Lock()

    def path_for(self, model: CatalogModel, quant: Quant) -> Path:
        return self.root / safe_dir_name(model.id) / quant.file

    def _pin_path(self, path: Path) -> Path:
        return path.with_name(path.name + ".sha256")

    def expected_sha256(self, model: CatalogModel, quant: Quant) -> str:
        """The catalog's pin, or the one recorded when IT imported the file with its hash."""
        if quant.pinned:
            return quant.sha256
        pin = self._pin_path(self.path_for(model, quant))
        return pin.read_text().strip() if pin.is_file() else ""

    def has(self, model: CatalogModel, quant: Quant | None = None) -> bool:
        return self.path_for(model, quant or model.quant()).is_file()

    def installed(self) -> list[StoredModel]:
        found = []
        for model in self.catalog.models:
            for quant in model.quants:
                path = self.path_for(model, quant)
                if path.is_file():
                    found.append(
                        StoredModel(model, quant, path, self.expected_sha256(model, quant))
                    )
        return found

    def hash_of(self, path: Path) -> str:
        """sha256 of a file, remembered per (inode, size, mtime) so a reload does not rehash."""
        st = path.stat()
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            known = self._verified.get(key)
        if known is None:
            known = sha256_file(path)
            with self._lock:
                self._verified[key] = known
        return known

    def verified_path(self, model: CatalogModel, quant: Quant | None = None) -> Path:
        """The file's path after checking its hash; raise if it is missing or differs."""
        quant = quant or model.quant()
        path = self.path_for(model, quant)
        if not path.is_file():
            raise NotFound(
                f"model {model.id} ({quant.name}) is not on this box; "
                f"fetch it with `appliance models fetch {model.id}`"
            )
        expected = self.expected_sha256(model, quant)
        if not expected:
            raise IntegrityError(
                f"{path} has no pinned sha256; re-import it with "
                f"`appliance models import PATH --sha256 ...`"
            )
        actual = self.hash_of(path)
        if actual != expected:
            raise IntegrityError(
                f"{path} has sha256 {actual}, expected {expected}; refusing to load it. "
                f"Remove it with `appliance models remove {model.id}` and fetch it again"
            )
        return path

    def add_file(
        self, model: CatalogModel, quant: Quant, source: Path, expected: str | None = None
    ) -> StoredModel:
        """Copy ``source`` into the store if its sha256 matches the pin (or ``expected``)."""
        pin = quant.sha256 if quant.pinned else (expected or "").lower()
        if quant.pinned and expected and expected.lower() != quant.sha256:
            raise BadRequest(f"the sha256 given for {model.id} differs from the catalog's pin")
        if len(pin) != 64:
            raise BadRequest(
                f"{model.id} ({quant.name}) has no pinned sha256 in the catalog; "
                "pass --sha256 with the hash published by its source"
            )
        dest = self.path_for(model, quant)
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".incoming-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != pin:
                raise IntegrityError(
                    f"{source} has sha256 {actual}, expected {pin}; nothing was stored"
                )
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the service user must read it
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        if not quant.pinned:
            self._pin_path(dest).write_text(pin + "\n")
        st = dest.stat()
        with self._lock:
            self._verified[(st.st_ino, st.st_size, st.st_mtime_ns)] = pin
        return StoredModel(model, quant, dest, pin)

    def remove(self, model: CatalogModel, quant: Quant | None = None) -> list[Path]:
        quants = [quant] if quant else list(model.quants)
        removed = []
        for q in quants:
            path = self.path_for(model, q)
            for p in (path, self._pin_path(path)):
                if p.is_file():
                    p.unlink()
                    removed.append(p)
        folder = self.root / safe_dir_name(model.id)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        return removed

    def verify_all(self) -> list[tuple[StoredModel, bool, str]]:
        results = []
        for stored in self.installed():
            actual = sha256_file(stored.path)
            ok = bool(stored.sha256) and actual == stored.sha256
            results.append((stored, ok, actual))
        return results

    def free_bytes(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free

    def describe(self) -> list[dict[str, object]]:
        return [
            {
                "id": s.model.id,
                "quant": s.quant.name,
                "kind": s.model.kind,
                "file": str(s.path),
                "size": s.size,
                "sha256": s.sha256,
            }
            for s in self.installed()
        ]
