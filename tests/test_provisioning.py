from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.auth import hash_token
from appliance.cli.main import cli
from appliance.errors import BadRequest
from appliance.history.db import HistoryDB
from appliance.models.catalog import load_catalog
from appliance.models.store import ModelStore
from appliance.provisioning.apply import ProvisioningError, apply, validate

REPO = Path(__file__).resolve().parents[1]
TEST_MODELS = REPO / ".cache" / "models"


def stick(tmp_path: Path, body: str, with_model: bool = True) -> Path:
    root = tmp_path / "stick"
    (root / "models").mkdir(parents=True)
    if with_model:
        catalog = load_catalog()
        smol = catalog.get("smollm2:135m")
        shutil.copy(
            ModelStore(TEST_MODELS, catalog).path_for(smol, smol.quant()),
            root / "models" / "smol.gguf",
        )
    (root / "provisioning.toml").write_text(body)
    return root / "provisioning.toml"


BASE = """
instance_id = "{iid}"
hostname = "ai-box"
site = "HQ"
timezone = "Europe/Warsaw"
[admin_token]
generate = true
[bind]
host = "0.0.0.0"
[[models]]
id = "smollm2:135m"
file = "models/smol.gguf"
sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
[settings]
queue_size = 4
"""


def test_apply_once_stores_only_the_token_hash(tmp_path: Path) -> None:
    path = stick(tmp_path, BASE.format(iid="one"))
    home, root = tmp_path / "home", tmp_path / "root"
    zone = root / "usr/share/zoneinfo/Europe/Warsaw"
    zone.parent.mkdir(parents=True)
    zone.write_bytes(b"TZif")
    result = apply(path, home, root)
    assert result.applied and result.token and result.token.startswith("apl_")
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Europe/Warsaw"
    assert (root / "etc/hostname").read_text() == "ai-box\n"
    assert (root / "etc/timezone").read_text() == "Europe/Warsaw\n"
    assert 'host = "0.0.0.0"' in (home / "appliance.toml").read_text()
    assert "queue_size = 4" in (home / "appliance.toml").read_text()
    smol = load_catalog().get("smollm2:135m")
    assert ModelStore(home / "models", load_catalog()).verified_path(smol).is_file()
    db = HistoryDB(home / "appliance.db")
    rows = db.read_sync(lambda d: list(d.table("tokens").rows))
    db.close()
    assert [r["hash"] for r in rows] == [hash_token(result.token)]
    on_disk = b"".join(
        p.read_bytes() for p in home.rglob("*") if p.is_file() and p.suffix != ".gguf"
    )
    assert result.token.encode() not in on_disk
    again = apply(path, home, root)
    assert not again.applied and "already provisioned" in again.messages[0]


def test_invalid_sticks_change_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cases = {
        "bad hash": BASE.format(iid="x").replace("b179c95", "0000000"),
        "bad hostname": BASE.format(iid="x").replace('"ai-box"', '"-bad_name"'),
        "bad timezone": BASE.format(iid="x").replace("Europe/Warsaw", "Mars/Olympus"),
        "bad setting": BASE.format(iid="x").replace("queue_size = 4", "queue_size = 0"),
        "unknown key": BASE.format(iid="x") + "\nsurprise = 1\n",
        "both tokens": BASE.format(iid="x").replace(
            "generate = true", f'generate = true\nsha256 = "{"a" * 64}"'
        ),
    }
    for i, (label, body) in enumerate(cases.items()):
        path = stick(tmp_path / str(i), body)
        with pytest.raises(ProvisioningError):
            validate(path, home)
        with pytest.raises(ProvisioningError):
            apply(path, home, tmp_path / "root")
        assert not home.exists() or not any(home.iterdir()), label


def test_failure_midway_rolls_back(tmp_path: Path) -> None:
    body = (
        BASE.format(iid="w")
        + '\n[plugins]\nwheels = [{file = "x.whl", sha256 = "'
        + "a" * 64
        + '"}]\n'
    )
    body = body.replace("[settings]\nqueue_size = 4\n", "") + "[settings]\nqueue_size = 4\n"
    path = stick(tmp_path, body)
    wheelhouse = path.parent / "wheelhouse"
    wheelhouse.mkdir()
    (wheelhouse / "x.whl").write_bytes(b"not a wheel")
    with pytest.raises(ProvisioningError, match="pinned sha256"):
        apply(path, tmp_path / "home", tmp_path / "root")
    digest = hashlib.sha256(b"not a wheel").hexdigest()
    path.write_text(body.replace("a" * 64, digest))
    home = tmp_path / "home"
    (home).mkdir(exist_ok=True)
    (home / "appliance.toml").write_text("queue_size = 9\n")
    with pytest.raises(BadRequest, match="pip could not install"):  # after the models went in
        apply(path, home, tmp_path / "root")
    assert (home / "appliance.toml").read_text() == "queue_size = 9\n"
    assert not list((home / "models").rglob("*.gguf"))
    assert not (home / "provisioned.json").exists()


def test_cli_prints_the_token_once(tmp_path: Path) -> None:
    path = stick(tmp_path, BASE.format(iid="cli"))
    runner = CliRunner()
    args = ["--home", str(tmp_path / "home")]
    checked = runner.invoke(cli, ["provision", "validate", str(path), *args])
    assert checked.exit_code == 0 and "is valid" in checked.output
    done = runner.invoke(
        cli, ["provision", "apply", str(path), "--system-root", str(tmp_path / "root"), *args]
    )
    assert done.exit_code == 0, done.output
    assert done.output.count("apl_") == 1
    again = runner.invoke(
        cli, ["provision", "apply", str(path), "--system-root", str(tmp_path / "root"), *args]
    )
    assert "apl_" not in again.output


def test_cli_can_show_the_token_on_the_console_only(tmp_path: Path) -> None:
    path = stick(tmp_path, BASE.format(iid="console"))
    console = tmp_path / "console"
    done = CliRunner().invoke(
        cli,
        [
            "provision",
            "apply",
            str(path),
            "--system-root",
            str(tmp_path / "root"),
            "--token-to",
            str(console),
            "--home",
            str(tmp_path / "home"),
        ],
    )
    assert done.exit_code == 0, done.output
    assert "apl_" not in done.output and str(console) in done.output
    assert console.read_text().count("apl_") == 1


def test_examples_are_valid_schema(tmp_path: Path) -> None:
    from appliance.provisioning.schema import Provisioning

    for example in (REPO / "provisioning" / "examples").glob("*.toml"):
        import tomllib

        Provisioning.model_validate(tomllib.loads(example.read_text()))


@pytest.mark.skipif(shutil.which("mformat") is None, reason="mtools is not installed")
def test_config_image_is_a_labelled_fat_image(tmp_path: Path) -> None:
    path = stick(tmp_path, BASE.format(iid="img"))
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    (wheelhouse / "appliance_x-1.0-py3-none-any.whl").write_bytes(b"wheel")
    image = tmp_path / "config.img"
    subprocess.run(
        [
            str(REPO / "provisioning" / "make-config-image"),
            "--config",
            str(path),
            "--models",
            str(path.parent / "models"),
            "--wheelhouse",
            str(wheelhouse),
            "--out",
            str(image),
        ],
        check=True,
        capture_output=True,
    )
    label = subprocess.run(
        ["mlabel", "-s", "-i", str(image), "::"], capture_output=True, text=True
    ).stdout
    assert "APPL-CONFIG" in label  # FAT labels are at most 11 characters
    toml = subprocess.run(
        ["mtype", "-i", str(image), "::/provisioning.toml"], capture_output=True, text=True
    ).stdout
    assert toml == path.read_text()
    sums = subprocess.run(
        ["mtype", "-i", str(image), "::/models/SHA256SUMS"], capture_output=True, text=True
    ).stdout
    assert "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  smol.gguf" in sums
    listing = subprocess.run(
        ["mdir", "-b", "-i", str(image), "::/wheelhouse"], capture_output=True, text=True
    ).stdout
    assert "appliance_x-1.0-py3-none-any.whl" in listing.lower() or "APPLIA" in listing
