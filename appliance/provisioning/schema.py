"""The provisioning.toml schema (documented in provisioning/README.md)."""

from __future__ import annotations

import re
import zoneinfo
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HOSTNAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdminToken(Strict):
    generate: bool = False
    sha256: str = ""

    @model_validator(mode="after")
    def _one(self) -> AdminToken:
        if self.generate == bool(self.sha256):
            raise ValueError("set exactly one of admin_token.generate = true or admin_token.sha256")
        if self.sha256 and not _SHA256.match(self.sha256):
            raise ValueError("admin_token.sha256 must be 64 lowercase hex characters")
        return self


class Bind(Strict):
    host: str = "0.0.0.0"
    port: int = Field(default=11434, ge=1, le=65535)


class Tls(Strict):
    mode: Literal["off", "self-signed", "provided"] = "off"
    cert: str = ""
    key: str = ""

    @model_validator(mode="after")
    def _files(self) -> Tls:
        if self.mode == "provided" and not (self.cert and self.key):
            raise ValueError(
                "tls.mode = 'provided' needs tls.cert and tls.key (files on the stick)"
            )
        return self


class ModelImport(Strict):
    id: str
    quant: str = ""
    file: str = ""
    url: str = ""
    sha256: str

    @model_validator(mode="after")
    def _source(self) -> ModelImport:
        if bool(self.file) == bool(self.url):
            raise ValueError(f"model {self.id}: give exactly one of 'file' (on the stick) or 'url'")
        if not _SHA256.match(self.sha256):
            raise ValueError(f"model {self.id}: sha256 must be 64 lowercase hex characters")
        return self


class WheelPin(Strict):
    file: str
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("sha256 must be 64 lowercase hex characters")
        return value


class Plugins(Strict):
    wheelhouse: str = "wheelhouse"
    wheels: list[WheelPin] = Field(default_factory=list)


class Fleet(Strict):
    key: str = Field(default="", repr=False)

    @field_validator("key")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < 16:
            raise ValueError(
                "fleet.key must be at least 16 characters (e.g. `openssl rand -hex 32`)"
            )
        return value


class Provisioning(Strict):
    instance_id: str = Field(min_length=1, max_length=64)
    hostname: str
    site: str = ""
    timezone: str = "UTC"
    admin_token: AdminToken
    bind: Bind = Field(default_factory=Bind)
    mdns: bool = True
    tls: Tls = Field(default_factory=Tls)
    models: list[ModelImport] = Field(default_factory=list)
    plugins: Plugins = Field(default_factory=Plugins)
    fleet: Fleet = Field(default_factory=Fleet)
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not _HOSTNAME.match(value):
            raise ValueError(
                "hostname: letters, digits and '-', at most 63, not starting or ending with '-'"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name like Europe/Warsaw)"
            ) from None
        return value
