"""One frozen settings object from ``appliance.toml`` in the home directory and ``APPLIANCE_*``.

Precedence, highest first: explicit overrides (CLI flags), environment, ``appliance.toml``,
defaults. Nothing else in the appliance reads the environment.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from appliance.errors import SettingsError

ENV_PREFIX = "APPLIANCE_"
LIST_SETTINGS = ("load_plugins", "disable_plugins", "rag_roots", "cors_origins", "rpc_workers")
CONFIG_FILE = "appliance.toml"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    data = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "appliance"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    home: Path = Field(default_factory=default_home)
    host: str = "127.0.0.1"
    port: int = Field(default=11434, ge=1, le=65535)
    load_plugins: tuple[str, ...] | None = None
    disable_plugins: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_json_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    header_timeout_s: float = Field(default=10.0, gt=0)
    """Time a client has to send a request's headers (slow clients are cut off with 408)."""
    body_timeout_s: float = Field(default=300.0, gt=0)
    """Time a client has to send a request's body."""
    max_connections_per_address: int = Field(default=128, ge=1)
    """Open connections one client address may hold (a proxy such as Open WebUI is one address)."""
    cors_origins: tuple[str, ...] = (
        "http://localhost",
        "https://localhost",
        "http://localhost:*",
        "https://localhost:*",
        "http://127.0.0.1",
        "https://127.0.0.1",
        "http://127.0.0.1:*",
        "https://127.0.0.1:*",
    )
    """Origins whose web pages may call the API (like OLLAMA_ORIGINS; "*" for any)."""
    mdns: bool = True
    fleet_key: str = Field(default="", repr=False)
    """Boxes with the same key share their models (the fleet plugin); it never leaves the box."""
    rpc_workers: tuple[str, ...] = ()
    """Boxes running `appliance rpc-worker` (HOST:PORT) whose memory this box's chat model may
    use: its layers are split over this box and them (llama.cpp RPC)."""
    instance_name: str = ""
    models_dir_override: Path | None = Field(default=None, alias="models_dir")
    chat_model: str = ""
    embed_model: str = ""
    chat_ctx: int = Field(default=4096, ge=256)
    n_threads: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)), ge=1)
    keep_alive_s: float = Field(default=300.0, ge=0)
    queue_size: int = Field(default=16, ge=1)
    parallel: int = Field(default=0, ge=0, le=64)
    """Sequences each chat model decodes at once (0: the hardware choice; OLLAMA_NUM_PARALLEL)."""
    load_at_start: bool = False
    generate_admin_token: bool = True
    log_level: str = "INFO"
    hardware_root: Path = Path("/")
    audio_sync_limit_s: float = Field(default=600.0, gt=0)
    rag_scan_interval_s: float = Field(default=300.0, ge=0)
    rag_roots: tuple[Path, ...] = (Path("/srv"), Path("/mnt"), Path("/media"), Path("/home"))
    """Folders under which RAG collections may be made (the box's own home never)."""
    calibrate_at_start: bool = True
    history_retention_days: int = Field(default=0, ge=0)
    tls_cert: Path | None = None
    tls_key: Path | None = Field(default=None, validate_default=True)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @field_validator("rpc_workers")
    @classmethod
    def _host_ports(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for endpoint in value:
            host, sep, port = endpoint.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{endpoint!r} is not HOST:PORT")
        return value

    @field_validator("tls_key")
    @classmethod
    def _tls_pair(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if (value is None) != (info.data.get("tls_cert") is None):
            raise ValueError("set tls_cert and tls_key together (PEM files), or neither")
        return value

    @property
    def db_path(self) -> Path:
        return self.home / "appliance.db"

    @property
    def models_dir(self) -> Path:
        return self.models_dir_override or self.home / "models"

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")


def _env_values(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    values: dict[str, tuple[Any, str]] = {}
    for field_name, info in Settings.model_fields.items():
        name = info.alias or field_name
        key = ENV_PREFIX + name.upper()
        if key in environ:
            raw: Any = environ[key]
            if name in LIST_SETTINGS:
                raw = tuple(p.strip() for p in raw.split(",") if p.strip())
            values[name] = (raw, key)
    return values


def _file_values(path: Path) -> dict[str, tuple[Any, str]]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from exc
    values: dict[str, tuple[Any, str]] = {}
    for key, value in data.items():
        if key in LIST_SETTINGS and isinstance(value, str):
            value = tuple(p.strip() for p in value.split(",") if p.strip())
        values[key] = (value, str(path))
    return values


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings; raise :class:`SettingsError` naming the key and where it came from."""
    env = os.environ if environ is None else environ
    explicit = {k: (v, "command line") for k, v in (overrides or {}).items() if v is not None}
    env_values = _env_values(env)
    home_value = explicit.get("home") or env_values.get("home")
    if "home" in env_values and env_values["home"][0] == "":
        del env_values["home"]
        home_value = explicit.get("home")
    home = Path(home_value[0]).expanduser() if home_value else default_home(env)
    merged = {**_file_values(home / CONFIG_FILE), **env_values, **explicit}
    merged["home"] = (home, home_value[1] if home_value else "default")
    try:
        return Settings(**{k: v for k, (v, _) in merged.items()})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "?"
            source = merged.get(key, (None, "?"))[1]
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown setting '{key}' in {source}")
            else:
                got = merged.get(key, (None, ""))[0]
                problems.append(
                    f"invalid value {got!r} for setting '{key}' ({source}): {err['msg']}"
                )
        raise SettingsError("; ".join(problems)) from None
