"""The page's server side: sign-in sessions (cookie rules, CSRF, revocation), the security headers
(a strict CSP), the redirect from / for browsers, and a page that asks for nothing outside."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from appliance.keys import APPLIANCE
from tests.fixtures import ClientFactory, bearer, new_token
from tests.test_tls import make_self_signed

STATIC = Path(__file__).parents[1] / "appliance_web" / "static"


async def lan_box(make_client: ClientFactory, **overrides: Any) -> Any:
    return await make_client(host="0.0.0.0", load_plugins=("echo", "ui"), **overrides)


async def signed_in(client: Any, token: str) -> dict[str, Any]:
    response = await client.post("/ui/session", json={"token": token})
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def test_signing_in_sets_a_strict_cookie_and_signing_out_ends_it(
    make_client: ClientFactory,
) -> None:
    client = await lan_box(make_client)
    admin = new_token(client, "admin")
    assert (await client.post("/ui/session", json={"token": "apl_wrong"})).status == 401
    response = await client.post("/ui/session", json={"token": admin})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    me = await response.json()
    assert me["role"] == "admin" and me["csrf"]
    assert (await client.get("/appliance/tokens")).status == 200  # the cookie stands for the token
    features = (await (await client.get("/ui/session")).json())["features"]
    assert features == {"rag": False, "transcription": False}
    out = await client.delete("/ui/session", headers={"X-CSRF-Token": me["csrf"]})
    assert out.status == 200
    assert (await client.get("/appliance/tokens")).status == 401
    assert await (await client.get("/ui/session")).json() == {"signed_in": False}


async def test_changes_need_the_csrf_secret(make_client: ClientFactory) -> None:
    client = await lan_box(make_client)
    me = await signed_in(client, new_token(client, "admin"))
    body = {"role": "user", "name": "forged"}
    assert (await client.post("/appliance/tokens", json=body)).status == 401
    wrong = await client.post("/appliance/tokens", json=body, headers={"X-CSRF-Token": "nope"})
    assert wrong.status == 401
    made = await client.post("/appliance/tokens", json=body, headers={"X-CSRF-Token": me["csrf"]})
    assert made.status == 201


async def test_a_revoked_token_ends_its_sessions(make_client: ClientFactory) -> None:
    client = await lan_box(make_client)
    admin = new_token(client, "admin")
    user = new_token(client, "user")
    await signed_in(client, user)
    assert (await client.get("/v1/models")).status == 200
    listed = await (await client.get("/appliance/tokens", headers=bearer(admin))).json()
    user_id = next(t["id"] for t in listed["tokens"] if t["role"] == "user")
    revoked = await client.delete(f"/appliance/tokens/{user_id}", headers=bearer(admin))
    assert revoked.status == 200
    assert (await client.get("/v1/models")).status == 401


async def test_secure_cookie_under_tls(make_client: ClientFactory, tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    make_self_signed("box", cert, key)
    client = await lan_box(make_client, tls_cert=cert, tls_key=key)
    response = await client.post("/ui/session", json={"token": new_token(client, "user")})
    assert "Secure" in response.headers["Set-Cookie"]


async def test_the_page_has_a_strict_csp_and_browsers_are_sent_to_it(
    make_client: ClientFactory,
) -> None:
    client = await lan_box(make_client)
    for path in ("/ui/", "/ui/static/app.js", "/ui/static/app.css"):
        response = await client.get(path)
        assert response.status == 200, path
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["X-Frame-Options"] == "DENY"
    moved = await client.get("/", headers={"Accept": "text/html"}, allow_redirects=False)
    assert moved.status == 302 and moved.headers["Location"] == "/ui/"
    bare = await client.get("/ui", allow_redirects=False)
    assert bare.status == 307 and bare.headers["Location"] == "/ui/"
    probe = await client.get("/")
    assert await probe.text() == "Ollama is running"
    assert client.app[APPLIANCE].is_public("/ui/static/app.js")
    assert not client.app[APPLIANCE].is_public("/ui/anything-else")


def test_the_page_loads_nothing_from_outside_and_writes_no_html() -> None:
    html = (STATIC / "index.html").read_text()
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith(("/ui/", "#", "data:")), url
    for script in STATIC.glob("*.js"):
        source = script.read_text()
        assert "innerHTML" not in source and "outerHTML" not in source and "eval(" not in source
        assert not re.search(r"""fetch\(\s*["'`]https?:""", source), script.name
        assert not re.search(r"""import .* from ["']https?:""", source), script.name
