"""The page in a real browser: Debian's chromium driven by Playwright (never a downloaded browser),
against a live box. Sign in, see the chat model, create a user token and use it on the API, chat
and see the answer streamed, transcribe audio into the message box, see Models and Plugins, sign
out and be refused. The page asks nothing of anyone but the box, and logs no errors; screenshots
are kept in build/test-artifacts/browser/."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator

import pytest

from tests.live import REPO, LiveBox, admin_token

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "build" / "test-artifacts" / "browser"
CLIP = next(iter(sorted((REPO / ".cache" / "librivox").glob("*.wav"))), None)

if CHROMIUM is None:
    pytest.skip(
        "chromium is not installed (make test installs it when run as root)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveBox, str]]:
    home = tmp_path_factory.mktemp("web") / "home"
    token = admin_token(home)
    with LiveBox(home, plugins="echo,ui,whisper") as live:
        yield live, token


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_the_page_in_a_real_browser(box: tuple[LiveBox, str]) -> None:
    live, admin = box
    outside: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(locale="en-GB")
        page = context.new_page()
        page.on(
            "request",
            lambda r: (
                None if r.url.startswith((live.url, "data:", "blob:")) else outside.append(r.url)
            ),
        )
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        page.goto(live.url + "/")
        assert page.url == live.url + "/ui/"
        shot(page, "1-sign-in")
        page.get_by_label("Token").fill(admin)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        expect(page.locator("#chat-model")).to_have_text("echo")
        for name in (
            "Overview",
            "Chat",
            "Models",
            "Plugins",
            "Tokens",
            "Collections",
            "History",
            "Audit",
        ):
            expect(page.get_by_role("link", name=name)).to_be_visible()
        shot(page, "2-overview")

        page.get_by_role("link", name="Tokens").click()
        page.get_by_label("Name").fill("reception")
        page.get_by_label("Role").select_option("user")
        page.get_by_role("button", name="Create token").click()
        user = page.locator("#new-token").inner_text()
        assert user.startswith("apl_")
        shot(page, "3-tokens")
        request = urllib.request.Request(
            live.url + "/v1/models", headers={"Authorization": f"Bearer {user}"}
        )
        with urllib.request.urlopen(request) as response:
            assert "echo" in json.loads(response.read())["data"][0]["id"]

        page.get_by_role("link", name="Chat").click()
        page.get_by_label("Model").select_option("echo")
        page.get_by_label("Message").fill("hello from the **browser** <script>alert(1)</script>")
        page.get_by_role("button", name="Send").click()
        answer = page.locator(".bubble.assistant").last
        expect(answer).to_contain_text("hello from the")
        expect(answer.locator("strong")).to_have_text("browser")  # Markdown rendered
        assert page.locator(".bubble script").count() == 0  # and no HTML from the model
        if CLIP is not None:
            page.get_by_label("Audio to transcribe").set_input_files(str(CLIP))
            expect(page.get_by_label("Message")).not_to_have_value("", timeout=60_000)
        shot(page, "4-chat")

        page.get_by_role("link", name="Models").click()
        expect(page.get_by_role("heading", name="Models")).to_be_visible()
        expect(page.locator("main")).to_contain_text("echo")
        page.get_by_role("button", name="Verify all files").click()
        expect(page.locator("#model-tasks")).to_contain_text("verify all: done", timeout=60_000)
        shot(page, "5-models")
        page.get_by_role("link", name="Plugins").click()
        expect(page.locator("main")).to_contain_text("whisper")
        shot(page, "6-plugins")
        page.get_by_role("link", name="History").click()
        expect(page.locator("main")).to_contain_text("hello from the")
        page.get_by_role("link", name="Audit").click()
        expect(page.locator("main")).to_contain_text("token.created")

        page.set_viewport_size({"width": 390, "height": 844})
        page.get_by_role("link", name="Chat").click()
        expect(page.get_by_label("Message")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        shot(page, "7-phone")

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        refused = context.request.get(live.url + "/appliance/conversations")
        assert refused.status == 401
        browser.close()
    assert not outside, f"the page asked outside the box: {outside}"
    assert not problems, f"console errors: {problems}"


def test_a_user_sees_only_their_sections_in_polish(box: tuple[LiveBox, str]) -> None:
    live, admin = box
    request = urllib.request.Request(
        live.url + "/appliance/tokens",
        data=json.dumps({"role": "user", "name": "pl"}).encode(),
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        user = json.loads(response.read())["token"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_context(locale="pl-PL").new_page()
        page.goto(live.url + "/ui/")
        page.get_by_label("Token").fill(user)
        page.get_by_role("button", name="Zaloguj się").click()
        expect(page.get_by_role("heading", name="Przegląd")).to_be_visible()
        links = page.locator("nav a").all_inner_texts()
        assert links == ["Przegląd", "Czat", "Kolekcje", "Historia"]
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent")
        assert focused  # the first stop has a name
        shot(page, "8-user-pl")
        browser.close()
