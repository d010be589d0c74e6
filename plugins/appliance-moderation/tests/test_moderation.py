"""Moderation: the real open_nsfw classifier on images the tests make; bad uploads; thresholds,
the queue and reviewers' decisions; a policy answered by the real chat model (the JSON shape,
not its wisdom); a folder batch; `/v1/moderations` with the openai client."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from appliance_moderation.classifier import OpenNsfwClassifier
from appliance_moderation.images import MAX_FILE_BYTES, decode
from appliance_moderation.policy import Answer, decide, parse_policy, parse_policy_toml
from PIL import Image

from appliance import (
    BadRequest,
    ImageClassifier,
    ImageInput,
    ImageScores,
    ModelInfo,
    PayloadTooLarge,
    hookimpl,
)
from appliance.models.catalog import load_catalog
from appliance.models.store import ModelStore
from tests.fixtures import ClientFactory, bearer, new_token
from tests.live import CLI, TEST_MODELS, LiveBox, admin_token

POLICY = """
name = "office"
description = "What may go on the shared channels."
[thresholds]
flag_score = 0.8
pass_score = 0.2
confidence = 0.7
[[question]]
id = "weapons"
text = "Does the image show a weapon?"
violation = "yes"
severity = "high"
[[question]]
id = "logo"
text = "Does the image show the company logo?"
violation = "no"
severity = "low"
"""


def png(
    colour: tuple[int, int, int], size: tuple[int, int] = (64, 48), noise: bool = False
) -> bytes:
    if noise:
        pixels = np.random.default_rng(7).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
    else:
        image = Image.new("RGB", size, colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def bomb() -> bytes:
    """A small file that opens as 200 million pixels."""
    out = io.BytesIO()
    Image.new("1", (20000, 10000)).save(out, format="PNG")
    return out.getvalue()


# Units: uploads, the classifier, the verdict.
def test_uploads_are_images_or_a_clear_4xx() -> None:
    image = decode(png((10, 200, 30)), "green.png")
    assert (image.width, image.height, image.source) == (64, 48, "green.png")
    assert Image.open(io.BytesIO(image.png)).mode == "RGB"
    with pytest.raises(BadRequest, match="not an image"):
        decode(b"%PDF-1.7 not a picture", "report.pdf")
    with pytest.raises(BadRequest, match="decompression bomb"):
        decode(bomb(), "bomb.png")
    with pytest.raises(PayloadTooLarge):
        decode(b"\0" * (MAX_FILE_BYTES + 1), "huge.png")


def classifier() -> OpenNsfwClassifier:
    catalog = load_catalog()
    model = catalog.get("open-nsfw")
    store = ModelStore(TEST_MODELS, catalog)
    info = ModelInfo(name=model.id, family=model.family, parameters="", context_length=0)
    return OpenNsfwClassifier(info, lambda: store.verified_path(model), 2)


def test_the_real_classifier_scores_every_image() -> None:
    model = classifier()
    model.load()
    images = [decode(png((128, 128, 128))), decode(png((0, 0, 0), (300, 200), noise=True))]
    started = time.perf_counter()
    scores = model.classify(images)
    assert time.perf_counter() - started < 5
    assert [s.model for s in scores] == ["open-nsfw", "open-nsfw"]
    for result in scores:
        assert set(result.scores) == {"nsfw", "sfw"}
        assert 0 <= result.scores["nsfw"] <= 1
        assert result.scores["nsfw"] + result.scores["sfw"] == pytest.approx(1, abs=1e-4)
    assert scores[0].scores["nsfw"] < 0.2  # a grey card is clearly safe
    assert model.classify(images[:1])[0].scores == pytest.approx(scores[0].scores, abs=1e-5)


def test_thresholds_turn_scores_and_answers_into_verdicts() -> None:
    policy = parse_policy_toml(POLICY)

    def verdict(nsfw: float, *answers: Answer) -> str:
        return decide(policy, [ImageScores("open-nsfw", {"nsfw": nsfw})], list(answers)).verdict

    clear = Answer("weapons", "no", 0.9), Answer("logo", "yes", 0.9)
    assert verdict(0.05, *clear) == "pass"
    assert verdict(0.95, *clear) == "flag"
    assert verdict(0.5, *clear) == "review"
    assert verdict(0.05, Answer("weapons", "yes", 0.9), clear[1]) == "flag"
    assert verdict(0.05, Answer("weapons", "yes", 0.4), clear[1]) == "review"
    assert verdict(0.05, Answer("weapons", "unsure", 0.9), clear[1]) == "review"
    assert verdict(0.05, clear[0], Answer("logo", "no", 0.95)) == "review"  # low severity
    reasons = decide(policy, [ImageScores("open-nsfw", {"nsfw": 0.95})], list(clear)).reasons
    assert reasons == ["open-nsfw: nsfw 0.95 >= 0.8"]
    with pytest.raises(BadRequest, match="question"):
        parse_policy({"name": "x", "question": [{"id": "a", "text": "abc", "severity": "huge"}]})
    with pytest.raises(BadRequest, match="TOML"):
        parse_policy_toml("name = ")


# The live box.
def call(
    url: str, path: str, token: str, body: Any = None, *, raw: bytes | None = None, ctype: str = ""
) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        url + path,
        data=data,
        method="PUT" if ctype == "application/toml" else None,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": ctype or "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def multipart(files: list[tuple[str, bytes]], **fields: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    for name, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload(url: str, token: str, files: list[tuple[str, bytes]], **fields: str) -> tuple[int, Any]:
    body, ctype = multipart(files, **fields)
    return call(url, "/appliance/moderation/checks", token, raw=body, ctype=ctype)


@pytest.mark.slow
def test_checks_policies_queue_and_decisions_on_a_live_box(tmp_path: Path) -> None:
    home, share = tmp_path / "home", tmp_path / "share"
    admin = admin_token(home)
    user = admin_token(home, role="user")
    share.mkdir()
    for i in range(3):
        (share / f"photo-{i}.png").write_bytes(png((40 * i, 90, 160)))
    (share / "notes.png").write_bytes(b"not really a picture")
    env = {"APPLIANCE_RAG_ROOTS": str(tmp_path), "APPLIANCE_PARALLEL": "4"}
    with LiveBox(home, plugins="moderation,llama", env=env) as box:
        status, saved = call(
            box.url, "/appliance/moderation/policies/office", admin, raw=POLICY.encode(),
            ctype="application/toml",
        )  # fmt: skip
        assert status == 200 and [q["id"] for q in saved["questions"]] == ["weapons", "logo"]
        assert call(box.url, "/appliance/moderation/policies", user)[0] == 403

        two = [("grey.png", png((128, 128, 128))), ("noise.png", png((0, 0, 0), noise=True))]
        status, checked = upload(box.url, user, two, policy="office")
        assert status == 200, checked
        for check in checked["data"]:
            assert check["status"] == "done" and check["verdict"] in ("pass", "flag", "review")
            [scores] = check["scores"]
            assert scores["model"] == "open-nsfw" and 0 <= scores["scores"]["nsfw"] <= 1
            assert [a["question"] for a in check["answers"]] == ["weapons", "logo"]
            for answer in check["answers"]:
                assert answer["answer"] in ("yes", "no", "unsure")
                assert 0 <= answer["confidence"] <= 1 and isinstance(answer["reason"], str)
            assert check["reasons"] and check["policy"] == "office"
        first = checked["data"][0]
        assert call(box.url, f"/appliance/moderation/checks/{first['id']}", user)[1] == first

        assert upload(box.url, user, [("doc.pdf", b"%PDF-1.7")])[0] == 400
        assert upload(box.url, user, [("bomb.png", bomb())])[0] == 400
        status, unknown = upload(box.url, user, [("a.png", png((1, 2, 3)))], policy="nope")
        assert status == 404 and "nope" in unknown["error"]["message"]

        status, review = upload(box.url, user, [("mid.png", png((200, 150, 140)))], policy="office")
        assert status == 200
        check_id = review["data"][0]["id"]
        assert call(box.url, "/appliance/moderation/queue", user)[0] == 403
        status, decided = call(
            box.url, f"/appliance/moderation/checks/{check_id}/decision", admin,
            {"verdict": "pass", "note": "the office dog"},
        )  # fmt: skip
        assert status == 200 and decided["decision"] == "pass" and decided["decided_by"]
        queue = call(box.url, "/appliance/moderation/queue", admin)[1]["data"]
        assert check_id not in [c["id"] for c in queue]
        audit = call(box.url, "/appliance/audit?action=moderation.decision", admin)[1]["audit"]
        assert any(r["resource"] == check_id and r["role"] == "admin" for r in audit)

        status, batch = call(
            box.url, "/appliance/moderation/checks", user, {"path": str(share), "policy": "office"}
        )
        assert status == 202 and batch["total"] == 3, batch
        assert [s["path"] for s in batch["skipped"]] == [str(share / "notes.png")]
        deadline = time.monotonic() + 240
        while (progress := call(box.url, f"/appliance/moderation/batches/{batch['id']}", user)[1])[
            "status"
        ] != "done":
            assert time.monotonic() < deadline, progress
            time.sleep(1)
        assert progress["done"] == 3 and sum(progress["verdicts"].values()) == 3
        assert call(box.url, "/appliance/moderation/checks", user, {"path": "/etc"})[0] == 403

        from openai import OpenAI

        client = OpenAI(base_url=box.url + "/v1", api_key=user)
        moderated = client.moderations.create(input=["Have a lovely day.", "Hello there"])
        assert len(moderated.results) == 2
        for result in moderated.results:
            scores = result.category_scores.model_dump(by_alias=True)
            assert len(scores) == 13 and all(0 <= v <= 1 for v in scores.values())
            assert isinstance(result.flagged, bool)
        assert moderated.model.startswith("policy:")


class FailingClassifier(ImageClassifier):
    def __init__(self) -> None:
        self.info = ModelInfo(name="broken", family="test", parameters="", context_length=0)

    def classify(self, images: list[ImageInput]) -> list[ImageScores]:
        raise RuntimeError("the stage fell over")


class Broken:
    @hookimpl
    def register_image_classifiers(self, register: Any, **_: Any) -> None:
        register(FailingClassifier())


async def test_a_failing_stage_marks_the_check_and_keeps_the_upload(
    make_client: ClientFactory,
) -> None:
    client = await make_client(extra_plugins=(("broken", Broken()),), load_plugins=("moderation",))
    headers = bearer(new_token(client, "admin"))
    form = aiohttp.FormData()
    form.add_field("file", png((9, 9, 9)), filename="kept.png")
    response = await client.post("/appliance/moderation/checks", data=form, headers=headers)
    assert response.status == 200, await response.text()
    [check] = (await response.json())["data"]
    assert check["status"] == "error" and "RuntimeError" in check["error"]
    assert check["source"] == "kept.png" and check["sha256"]
    response = await client.get(
        f"/appliance/moderation/checks/{check['id']}/image", headers=headers
    )
    assert response.status == 200 and (await response.read()).startswith(b"\x89PNG")
    queue = await (await client.get("/appliance/moderation/queue", headers=headers)).json()
    assert check["id"] in [c["id"] for c in queue["data"]]


def test_the_command_line_checks_files_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "grey.png").write_bytes(png((128, 128, 128)))
    (folder / "broken.jpg").write_bytes(b"not an image")
    env = {
        **os.environ,
        "APPLIANCE_HOME": str(tmp_path / "home"),
        "APPLIANCE_MODELS_DIR": str(TEST_MODELS),
        "APPLIANCE_LOAD_PLUGINS": "moderation",
        "APPLIANCE_CALIBRATE_AT_START": "false",
    }
    done = subprocess.run(
        [*CLI, "moderation", "check", str(folder), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results = {Path(r["source"]).name: r for r in json.loads(done.stdout)}
    assert results["grey.png"]["verdict"] == "pass"  # no policy questions: the scores decide
    assert results["grey.png"]["scores"][0]["scores"]["nsfw"] < 0.2
    assert (
        results["broken.jpg"]["status"] == "error"
        and "not an image" in (results["broken.jpg"]["error"])
    )
