"""``appliance provision apply``: validate the whole config stick first, then apply it all or
nothing, once per instance id. Only the admin token's hash is ever written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from appliance.auth import hash_token, new_token, store_token_hash
from appliance.core import Appliance, Event
from appliance.errors import ApplianceError, BadRequest
from appliance.models.catalog import load_catalog
from appliance.models.sources import fetch_model
from appliance.models.store import ModelStore, sha256_file
from appliance.plugin_admin import install, load_for
from appliance.provisioning.schema import Provisioning
from appliance.settings import CONFIG_FILE, Settings, load_settings
from appliance.tls import check_pair, fingerprint, make_self_signed

STATE_FILE = "provisioned.json"
TLS_CERT, TLS_KEY = "tls.crt", "tls.key"


class ProvisioningError(BadRequest):
    """The config stick is invalid; nothing was changed."""


@dataclass
class Plan:
    config: Provisioning
    stick: Path
    settings_toml: dict[str, Any]
    model_files: list[tuple[Any, Any, Path | str, str]] = field(default_factory=list)
    wheels: list[tuple[Path, str]] = field(default_factory=list)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def render_settings(values: dict[str, Any]) -> str:
    lines = ["# Written by `appliance provision apply`; edit the config stick instead."]
    lines += [f"{key} = {_toml_value(value)}" for key, value in sorted(values.items())]
    return "\n".join(lines) + "\n"


def validate(path: Path, home: Path) -> Plan:
    """Check everything (schema, settings, files and their hashes) without changing anything."""
    stick = path.parent
    try:
        raw = tomllib.loads(path.read_text())
        config = Provisioning.model_validate(raw)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProvisioningError(f"{path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        )
        raise ProvisioningError(f"{path} is invalid: {problems}") from None
    values: dict[str, Any] = {
        "host": config.bind.host,
        "port": config.bind.port,
        "mdns": config.mdns,
        "instance_name": config.hostname,
        "generate_admin_token": False,
        **({"fleet_key": config.fleet.key} if config.fleet.key else {}),
        **config.settings,
    }
    try:
        load_settings({**values, "home": home}, environ={})
    except ApplianceError as exc:
        raise ProvisioningError(f"settings overrides: {exc.message}") from None
    plan = Plan(config, stick, values)
    catalog = load_catalog()
    for item in config.models:
        try:
            model = catalog.get(item.id)
            quant = model.quant(item.quant or None)
        except KeyError as exc:
            raise ProvisioningError(f"models: {exc.args[0]}") from None
        if quant.pinned and quant.sha256 != item.sha256:
            raise ProvisioningError(f"models: {item.id} sha256 differs from the catalog's pin")
        if item.file:
            file = (stick / item.file).resolve()
            if not file.is_relative_to(stick.resolve()) or not file.is_file():
                raise ProvisioningError(f"models: {item.file} is not a file on the stick")
            if sha256_file(file) != item.sha256:
                raise ProvisioningError(f"models: {item.file} does not match its sha256")
            plan.model_files.append((model, quant, file, item.sha256))
        else:
            plan.model_files.append((model, quant, item.url, item.sha256))
    wheelhouse = stick / config.plugins.wheelhouse
    for wheel in config.plugins.wheels:
        file = (wheelhouse / wheel.file).resolve()
        if not file.is_relative_to(stick.resolve()) or not file.is_file():
            raise ProvisioningError(f"plugins: {wheel.file} is not in the wheelhouse")
        if sha256_file(file) != wheel.sha256:
            raise ProvisioningError(f"plugins: {wheel.file} does not match its pinned sha256")
        plan.wheels.append((file, wheel.sha256))
    if config.tls.mode == "provided":
        for name in (config.tls.cert, config.tls.key):
            if not (stick / name).is_file():
                raise ProvisioningError(f"tls: {name} is not on the stick")
        try:
            check_pair(stick / config.tls.cert, stick / config.tls.key)
        except ValueError as exc:
            raise ProvisioningError(f"tls: {exc}") from None
    if config.tls.mode != "off":
        values["tls_cert"] = str(home / TLS_CERT)
        values["tls_key"] = str(home / TLS_KEY)
    return plan


def already_applied(home: Path, instance_id: str) -> bool:
    try:
        return bool(json.loads((home / STATE_FILE).read_text())["instance_id"] == instance_id)
    except (OSError, ValueError, KeyError):
        return False


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _link_localtime(system_root: Path, timezone: str) -> None:
    """Point /etc/localtime at the zone, as systemd and glibc read it (when tzdata is there)."""
    zone = Path("/usr/share/zoneinfo") / timezone
    if not (system_root / zone.relative_to("/")).is_file():
        return
    link = system_root / "etc" / "localtime"
    tmp = link.with_name(".localtime.new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(zone)
    os.replace(tmp, link)


@dataclass
class Result:
    applied: bool
    token: str | None = None
    messages: list[str] = field(default_factory=list)


def apply(path: Path, home: Path, system_root: Path = Path("/")) -> Result:
    """Validate, then apply; on any failure undo what was done and raise."""
    plan = validate(path, home)
    config = plan.config
    if already_applied(home, config.instance_id):
        return Result(False, messages=[f"instance {config.instance_id} is already provisioned"])
    home.mkdir(parents=True, exist_ok=True)
    settings_path = home / CONFIG_FILE
    backup = settings_path.read_text() if settings_path.is_file() else None
    stored: list[Path] = []
    token: str | None = None
    try:
        _write_atomic(settings_path, render_settings(plan.settings_toml))
        settings: Settings = load_settings({"home": home}, environ={})
        store = ModelStore(settings.models_dir, load_catalog())
        for model, quant, source, sha in plan.model_files:
            if isinstance(source, Path):
                stored.append(store.add_file(model, quant, source, sha).path)
            else:
                stored.append(fetch_model(store, model, quant, sha256=sha, source=source).path)
        for wheel, sha in plan.wheels:
            install(str(wheel), (wheel.parent,), None, sha)
        etc = system_root / "etc"
        _write_atomic(etc / "hostname", config.hostname + "\n")
        _write_atomic(etc / "timezone", config.timezone + "\n")
        _link_localtime(system_root, config.timezone)
        if config.tls.mode == "provided":
            stored += [home / TLS_CERT, home / TLS_KEY]
            shutil.copyfile(plan.stick / config.tls.cert, home / TLS_CERT)
            shutil.copyfile(plan.stick / config.tls.key, home / TLS_KEY)
            os.chmod(home / TLS_KEY, 0o600)
        elif config.tls.mode == "self-signed":
            stored += [home / TLS_CERT, home / TLS_KEY]
            make_self_signed(config.hostname, home / TLS_CERT, home / TLS_KEY)
        token_hash = config.admin_token.sha256
        if config.admin_token.generate:
            token = new_token()
            token_hash = hash_token(token)
        appliance = Appliance(settings, load_for(settings))
        try:
            appliance.open()
            appliance.db.write_sync(
                lambda db: store_token_hash(
                    db, token_hash, "admin", "provisioned admin", "provisioning"
                )
            )
            appliance.track(
                Event(
                    "provisioned",
                    resource=config.instance_id,
                    address="stick",
                    detail={"hostname": config.hostname, "site": config.site},
                )
            )
        finally:
            appliance.close()
        _write_atomic(
            home / STATE_FILE,
            json.dumps(
                {
                    "instance_id": config.instance_id,
                    "applied_at": time.time(),
                    "site": config.site,
                    "hostname": config.hostname,
                },
                indent=2,
            ),
        )
    except Exception:
        for file in stored:
            file.unlink(missing_ok=True)
        if backup is None:
            settings_path.unlink(missing_ok=True)
        else:
            _write_atomic(settings_path, backup)
        raise
    messages = [f"provisioned {config.hostname} ({config.instance_id})"]
    if config.tls.mode != "off":
        messages.append(f"HTTPS certificate sha256 fingerprint {fingerprint(home / TLS_CERT)}")
    return Result(True, token, messages)
