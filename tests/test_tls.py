"""HTTPS: settings, self-signed certificates from provisioning, serving and discovery over TLS."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509

from appliance.app import create_app
from appliance.discovery.browse import discover
from appliance.discovery.mdns import Advertiser
from appliance.errors import SettingsError
from appliance.keys import APPLIANCE
from appliance.provisioning.apply import ProvisioningError, apply, validate
from appliance.settings import load_settings
from appliance.tls import fingerprint, make_self_signed, server_context
from tests.fixtures import make_settings
from tests.test_provisioning import BASE, stick


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def test_cert_and_key_go_together(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="tls_cert and tls_key together"):
        load_settings({"home": tmp_path, "tls_cert": tmp_path / "a.crt"}, environ={})


def test_a_self_signed_certificate_names_the_box(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    key.write_text("an older, world-readable key")
    key.chmod(0o644)
    shown = make_self_signed("ai-box", cert, key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    names = (
        x509.load_pem_x509_certificate(cert.read_bytes())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.DNSName)
    )
    assert {"ai-box", "ai-box.local", "localhost"} <= set(names)
    assert shown == fingerprint(cert) and len(shown.split(":")) == 32


def test_unusable_files_stop_start_up_naming_the_settings(tmp_path: Path) -> None:
    (tmp_path / "a.crt").write_text("not a certificate")
    (tmp_path / "a.key").write_text("not a key")
    settings = load_settings(
        {"home": tmp_path, "tls_cert": tmp_path / "a.crt", "tls_key": tmp_path / "a.key"},
        environ={},
    )
    with pytest.raises(SettingsError, match="tls_cert"):
        server_context(settings)


def test_serve_speaks_https_only_when_configured(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    make_self_signed("ai-box", cert, key)
    port = free_port()
    env = {
        **os.environ,
        "APPLIANCE_LOAD_PLUGINS": "echo",
        "APPLIANCE_MDNS": "false",
        "APPLIANCE_CALIBRATE_AT_START": "false",
        "APPLIANCE_TLS_CERT": str(cert),
        "APPLIANCE_TLS_KEY": str(key),
    }
    home = tmp_path / "home"
    command = [sys.executable, "-m", "appliance", "serve", "--port", str(port), "--home", str(home)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(
                    f"https://localhost:{port}/appliance/health",
                    context=client_context(cert),
                    timeout=10,
                ) as response:
                    assert response.status == 200
                    break
            except (OSError, urllib.error.URLError):
                assert time.monotonic() < deadline, "server did not start"
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                time.sleep(0.3)
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://localhost:{port}/appliance/health", timeout=10)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0].decode()
    assert f"serving on https://127.0.0.1:{port}" in output
    assert fingerprint(cert) in output


async def test_discovery_finds_and_verifies_an_https_box(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    make_self_signed("ai-box", cert, key)
    settings = make_settings(
        tmp_path / "home", instance_name="Secure Office", tls_cert=cert, tls_key=key
    )
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(settings))
    await site.start()
    advertiser = Advertiser(app[APPLIANCE], "127.0.0.1", port, tls=True)
    await advertiser.start()
    try:
        boxes = await discover(listen_s=1.5, interfaces=["127.0.0.1"])
        box = next(b for b in boxes if b.name == "Secure Office")
        assert box.txt["tls"] == "1"
        assert box.reachable and box.record is not None, box.error
    finally:
        await advertiser.stop()
        await runner.cleanup()


def test_provisioning_makes_a_self_signed_certificate_and_serves_with_it(tmp_path: Path) -> None:
    body = BASE.format(iid="tls").replace("[bind]", '[tls]\nmode = "self-signed"\n[bind]')
    home = tmp_path / "home"
    result = apply(stick(tmp_path, body), home, tmp_path / "root")
    assert any("fingerprint" in m for m in result.messages)
    settings = load_settings({"home": home}, environ={})
    assert settings.tls_cert == home / "tls.crt" and settings.tls_key == home / "tls.key"
    assert stat.S_IMODE((home / "tls.key").stat().st_mode) == 0o600
    assert server_context(settings) is not None


def test_provided_certificates_must_match_their_key(tmp_path: Path) -> None:
    body = BASE.format(iid="tls-provided").replace(
        "[bind]", '[tls]\nmode = "provided"\ncert = "box.crt"\nkey = "box.key"\n[bind]'
    )
    path = stick(tmp_path, body)
    make_self_signed("ai-box", path.parent / "box.crt", path.parent / "box.key")
    make_self_signed("other", tmp_path / "other.crt", path.parent / "box.key")
    with pytest.raises(ProvisioningError, match="tls"):
        validate(path, tmp_path / "home")
    make_self_signed("ai-box", path.parent / "box.crt", path.parent / "box.key")
    home = tmp_path / "home"
    apply(path, home, tmp_path / "root")
    assert (home / "tls.crt").read_bytes() == (path.parent / "box.crt").read_bytes()
    assert stat.S_IMODE((home / "tls.key").stat().st_mode) == 0o600
