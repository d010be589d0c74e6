"""Plugin installs by IT: offline pip into the box's own environment, pinned hashes, audit,
enable/disable state, removal. Changes take effect when the box restarts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import distributions, entry_points
from pathlib import Path

from appliance.errors import BadRequest, Forbidden, NotFound
from appliance.models.store import sha256_file
from appliance.plugins import ENTRY_POINT_GROUP, Plugins, load_plugins
from appliance.settings import Settings

STATE_FILE = "plugins.json"
_HEX64 = re.compile(r"\b([0-9a-f]{64})\b")


def _state_path(settings: Settings) -> Path:
    return settings.home / STATE_FILE


def disabled(settings: Settings) -> set[str]:
    try:
        data = json.loads(_state_path(settings).read_text())
        return set(data.get("disabled", []))
    except (OSError, ValueError):
        return set()


def set_enabled(settings: Settings, name: str, enabled: bool) -> None:
    known = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in known:
        raise NotFound(f"no installed plugin named {name!r}; see `appliance plugins list`")
    names = disabled(settings)
    names.discard(name) if enabled else names.add(name)
    settings.home.mkdir(parents=True, exist_ok=True)
    _state_path(settings).write_text(json.dumps({"disabled": sorted(names)}, indent=2))


def load_for(settings: Settings, extra: Iterable[tuple[str, object]] = ()) -> Plugins:
    """The plugins this box runs: the allow-list, minus disabled ones (settings and IT's state)."""
    deny = tuple(sorted(set(settings.disable_plugins) | disabled(settings)))
    return load_plugins(settings.load_plugins, extra, deny)


def pinned_hash(hashes_file: Path, wheel: Path) -> str:
    """The sha256 pinned for ``wheel`` in a ``sha256sum`` or pip ``--hash`` style file."""
    project = wheel.name.split("-")[0].lower().replace("_", "-")
    for line in hashes_file.read_text().splitlines():
        found = _HEX64.search(line.lower())
        if not found:
            continue
        text = line.lower().replace("_", "-")
        if wheel.name.lower().replace("_", "-") in text or re.match(
            rf"^\s*{re.escape(project)}\s*(==|@|\s)", text
        ):
            return found.group(1)
    raise Forbidden(f"{hashes_file} pins no sha256 for {wheel.name}; refusing to install it")


@dataclass
class InstallResult:
    target: str
    sha256: str
    output: str
    new_plugins: list[str]


def _plugin_names() -> set[str]:
    return {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


def install(
    target: str,
    find_links: Iterable[Path] = (),
    hashes_file: Path | None = None,
    expected_sha256: str | None = None,
    python: str = sys.executable,
) -> InstallResult:
    """Install a wheel file or a name from local wheelhouses, never from the internet."""
    links = [str(p) for p in find_links]
    wheel = Path(target)
    sha = ""
    if wheel.suffix == ".whl":
        if not wheel.is_file():
            raise NotFound(f"{wheel} does not exist")
        sha = sha256_file(wheel)
        pin = expected_sha256 or (pinned_hash(hashes_file, wheel) if hashes_file else None)
        if pin is not None and pin.lower() != sha:
            raise Forbidden(f"{wheel.name} has sha256 {sha}, but {pin} is pinned; not installed")
        links.append(str(wheel.parent))
        requirement = [str(wheel)]
    elif hashes_file is not None:
        requirement = ["--require-hashes", "-r", str(hashes_file)]
    else:
        requirement = [target]
    before = _plugin_names()
    command = [
        python,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--disable-pip-version-check",
        *[arg for link in links for arg in ("--find-links", link)],
        *requirement,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BadRequest(
            f"pip could not install {target} offline: "
            + (done.stderr.strip() or done.stdout.strip())[-800:]
        )
    return InstallResult(target, sha, done.stdout[-2000:], sorted(_plugin_names() - before))


def distribution_of(name: str) -> str:
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP and ep.name == name:
                return str(dist.metadata["Name"])
    raise NotFound(f"no installed plugin named {name!r}")


def remove(name: str, python: str = sys.executable) -> str:
    dist = distribution_of(name)
    if dist == "appliance":
        raise BadRequest("the core cannot be removed as a plugin")
    done = subprocess.run(
        [python, "-m", "pip", "uninstall", "-y", dist], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BadRequest(f"pip could not remove {dist}: {done.stderr.strip()[-500:]}")
    return dist


def restart_service() -> str:
    """Restart the systemd unit when there is one; otherwise say what to do."""
    systemctl = shutil.which("systemctl")
    if (
        systemctl
        and subprocess.run([systemctl, "is-active", "--quiet", "appliance"]).returncode == 0
    ):
        subprocess.run([systemctl, "restart", "appliance"], check=False)
        return "restarted appliance.service"
    return "restart `appliance serve` (or `systemctl restart appliance`) to apply the change"
