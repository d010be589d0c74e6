"""Checks: an upload recorded first (its row and its pixels on disk), then the stages run, then
the verdict kept with everything that led to it. A failing stage marks the check ``error`` with
its reason; the record stays. Batches (a folder) are checks with a batch id, run in the
background in order and resumed after a restart."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
import uuid
from typing import Any, Literal

import sqlite_utils

from appliance import (
    Appliance,
    ApplianceError,
    ChatRequest,
    ImageClassifier,
    ImageInput,
    ImageScores,
    NotFound,
    SamplingOptions,
    migration,
)
from appliance_moderation.policy import (
    ANSWER_SCHEMA,
    DEFAULT,
    Answer,
    Policy,
    Question,
    decide,
    parse_policy,
)

log = logging.getLogger(__name__)
CHECKS, POLICIES = "moderation_checks", "moderation_policies"
DESCRIBE_PROMPT = (
    "Describe this image for a reviewer in three or four plain sentences: who or what is shown, "
    "what they are doing, any text, weapons, nudity, drugs or violence."
)
SYSTEM = (
    "You check images against a company's policy. You cannot see the image: you are given a "
    "description of it and an image classifier's scores (0 = clearly not, 1 = clearly so). "
    "Answer the question about the image with JSON: answer is yes, no or unsure; confidence "
    "is 0 to 1; reason is one short sentence."
)
JSON_FIELDS = ("scores", "answers", "reasons")
ASKED_AT_ONCE = 2
"""Policy questions in the chat model's slots at once, box-wide: moderation takes its share of
the model and leaves the rest (and the waiting line) to the people chatting."""


@migration("create_moderation_tables")
def create_tables(db: sqlite_utils.Database) -> None:
    db.table(POLICIES).create(
        {"name": str, "body": str, "created_at": float, "updated_at": float}, pk="name"
    )
    db.table(CHECKS).create(
        {
            "id": str,
            "batch": str,
            "created_at": float,
            "owner": str,
            "policy": str,
            "source": str,
            "sha256": str,
            "width": int,
            "height": int,
            "status": str,
            "verdict": str,
            "scores": str,
            "description": str,
            "answers": str,
            "reasons": str,
            "error": str,
            "finished_at": float,
            "decision": str,
            "decided_by": str,
            "decided_at": float,
            "note": str,
        },
        pk="id",
    )
    db.table(CHECKS).create_index(["status", "verdict", "created_at"])
    db.table(CHECKS).create_index(["batch"])


def public(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in JSON_FIELDS:
        out[key] = json.loads(out[key]) if out.get(key) else []
    out["object"] = "moderation.check"
    return out


class Checks:
    """The checks of one box: records, the pipeline, the background line for batches."""

    def __init__(self, appliance: Appliance) -> None:
        self.appliance = appliance
        self.folder = appliance.settings.home / "moderation"
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._asking = asyncio.Semaphore(ASKED_AT_ONCE)

    # Policies.
    async def policy(self, name: str | None) -> Policy:
        if not name or name == DEFAULT.name:
            stored = await self._policy_row(DEFAULT.name)
            return stored or DEFAULT
        policy = await self._policy_row(name)
        if policy is None:
            raise NotFound(f"no moderation policy named {name!r}", param="policy")
        return policy

    async def _policy_row(self, name: str) -> Policy | None:
        def read(db: sqlite_utils.Database) -> str | None:
            rows = list(db.table(POLICIES).rows_where("name = ?", [name]))
            return str(rows[0]["body"]) if rows else None

        body = await self.appliance.db.read(read)
        return parse_policy(json.loads(body)) if body else None

    async def policies(self) -> list[Policy]:
        rows = await self.appliance.db.read(
            lambda db: list(db.table(POLICIES).rows_where(order_by="name"))
        )
        return [parse_policy(json.loads(r["body"])) for r in rows]

    async def save_policy(self, policy: Policy) -> None:
        now = time.time()
        body = json.dumps(policy.model_dump(by_alias=True))

        def write(db: sqlite_utils.Database) -> None:
            existing = list(db.table(POLICIES).rows_where("name = ?", [policy.name]))
            created = existing[0]["created_at"] if existing else now
            db.table(POLICIES).upsert(
                {"name": policy.name, "body": body, "created_at": created, "updated_at": now},
                pk="name",
            )

        await self.appliance.db.write(write)

    async def delete_policy(self, name: str) -> bool:
        def write(db: sqlite_utils.Database) -> bool:
            found = bool(list(db.table(POLICIES).rows_where("name = ?", [name])))
            if found:
                db.table(POLICIES).delete(name)
            return found

        return bool(await self.appliance.db.write(write))

    # Records.
    async def record(
        self, image: ImageInput, digest: str, owner: str, policy: str, batch: str = ""
    ) -> str:
        """Keep the upload (row and pixels) before any stage runs; return its id."""
        check_id = f"chk_{uuid.uuid4().hex[:20]}"
        await asyncio.to_thread(self._keep_pixels, check_id, image.png)
        row = {
            "id": check_id,
            "batch": batch,
            "created_at": time.time(),
            "owner": owner,
            "policy": policy,
            "source": image.source,
            "sha256": digest,
            "width": image.width,
            "height": image.height,
            "status": "pending",
        }
        await self.appliance.db.write(lambda db: db.table(CHECKS).insert(row))
        return check_id

    def _keep_pixels(self, check_id: str, png: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{check_id}.png").write_bytes(png)

    async def get(self, check_id: str) -> dict[str, Any]:
        rows = await self.appliance.db.read(
            lambda db: list(db.table(CHECKS).rows_where("id = ?", [check_id]))
        )
        if not rows:
            raise NotFound(f"no moderation check {check_id!r}")
        return public(rows[0])

    async def where(self, where: str, args: list[Any], limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.appliance.db.read(
            lambda db: list(
                db.table(CHECKS).rows_where(where, args, order_by="created_at", limit=limit)
            )
        )
        return [public(r) for r in rows]

    async def _update(self, check_id: str, **values: Any) -> None:
        for key in JSON_FIELDS:
            if key in values:
                values[key] = json.dumps(values[key])
        await self.appliance.db.write(lambda db: db.table(CHECKS).update(check_id, values))

    async def decide_by_person(self, check_id: str, verdict: str, who: str, note: str) -> None:
        await self.get(check_id)
        await self._update(
            check_id, decision=verdict, decided_by=who, decided_at=time.time(), note=note
        )

    # The pipeline.
    async def image_of(self, check_id: str, row: dict[str, Any]) -> ImageInput:
        png = await asyncio.to_thread((self.folder / f"{check_id}.png").read_bytes)
        return ImageInput(png, int(row["width"]), int(row["height"]), str(row["source"]))

    async def run(self, check_id: str) -> dict[str, Any]:
        row = await self.get(check_id)
        await self._update(check_id, status="running")
        try:
            policy = await self.policy(row["policy"])
            image = await self.image_of(check_id, row)
            scores = await self._classify(image)
            description = await self._describe(image)
            answers = await self._answer(policy, description, scores, row["owner"])
            decision = decide(policy, scores, answers)
        except ApplianceError as exc:
            await self._failed(check_id, exc.message)
        except Exception as exc:
            log.exception("moderation check %s failed", check_id)
            await self._failed(check_id, f"the check failed ({type(exc).__name__}); see the log")
        else:
            await self._update(
                check_id,
                status="done",
                verdict=decision.verdict,
                reasons=decision.reasons,
                scores=[{"model": s.model, "scores": s.scores} for s in scores],
                description=description,
                answers=[vars(a) for a in answers],
                finished_at=time.time(),
            )
        return await self.get(check_id)

    async def _failed(self, check_id: str, reason: str) -> None:
        await self._update(check_id, status="error", error=reason, finished_at=time.time())

    async def _classify(self, image: ImageInput) -> list[ImageScores]:
        scheduler = self.appliance.scheduler
        scores: list[ImageScores] = []
        for classifier in self.appliance.registry.image_classifiers.values():
            scores += await scheduler.run(
                classifier, functools.partial(_classify, classifier, image)
            )
        return scores

    async def _describe(self, image: ImageInput) -> str:
        describers = self.appliance.registry.image_describers.values()
        if not describers:
            return ""
        describer = describers[0]
        text = await self.appliance.scheduler.run(
            describer, lambda _c: describer.describe(image, DESCRIBE_PROMPT)
        )
        return str(text).strip()

    async def _answer(
        self, policy: Policy, description: str, scores: list[ImageScores], owner: str
    ) -> list[Answer]:
        if not policy.questions:
            return []
        facts = "; ".join(
            f"{s.model}: " + ", ".join(f"{k} {v:.2f}" for k, v in s.scores.items()) for s in scores
        )
        context = (
            f"Description: {description or '(no describer on this box: judge by the scores)'}\n"
            f"Classifier scores: {facts or '(none)'}"
        )
        return list(await asyncio.gather(*(self.ask(q, context, owner) for q in policy.questions)))

    async def ask(
        self, question: Question, context: str, owner: str, system: str = SYSTEM
    ) -> Answer:
        """One policy question answered by the box's chat model, held to the answer's JSON."""
        name = self.appliance.default_model("chat")
        model = self.appliance.registry.chat.find(name) if name else None
        if model is None:
            return Answer(question.id, "unsure", 0.0, "this box has no chat model to ask")
        request = ChatRequest(
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": f"{context}\nQuestion: {question.text}"},
            ],
            sampling=SamplingOptions(temperature=0.0, max_tokens=120),
            response_format={"type": "json_schema", "json_schema": {"schema": ANSWER_SCHEMA}},
        )
        async with self._asking:
            ticket = await self.appliance.scheduler.generate(model, request, caller=owner)
            text = "".join([chunk.text async for chunk in ticket])
        try:
            data = json.loads(text)
            answer: Literal["yes", "no", "unsure"] = (
                data["answer"] if data["answer"] in ("yes", "no") else "unsure"
            )
            confidence = min(1.0, max(0.0, float(data["confidence"])))
            return Answer(question.id, answer, confidence, str(data.get("reason", ""))[:300])
        except (ValueError, KeyError, TypeError):
            return Answer(question.id, "unsure", 0.0, "the model's answer was cut short")

    # Batches: a background line, in order, resumed after a restart.
    def start(self) -> None:
        self._runner = asyncio.create_task(self._run_pending())

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def _run_pending(self) -> None:
        await self.appliance.db.write(
            lambda db: db.execute(
                f"UPDATE {CHECKS} SET status = 'pending' WHERE status = 'running' AND batch != ''"
            )
        )
        while True:
            pending = await self.where("status = 'pending' AND batch != ''", [], limit=1)
            if not pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self.run(pending[0]["id"])
            except Exception:  # the line carries on; the check says what failed
                log.exception("moderation batch check %s failed", pending[0]["id"])
                await self._failed(pending[0]["id"], "the check failed; see the log")

    async def batch(self, batch_id: str) -> dict[str, Any]:
        rows = await self.where("batch = ?", [batch_id], limit=10_000)
        if not rows:
            raise NotFound(f"no moderation batch {batch_id!r}")
        done = sum(1 for r in rows if r["status"] in ("done", "error"))
        return {
            "id": batch_id,
            "object": "moderation.batch",
            "total": len(rows),
            "done": done,
            "progress": done / len(rows),
            "status": "done" if done == len(rows) else "running",
            "verdicts": {v: sum(1 for r in rows if r["verdict"] == v) for v in VERDICTS},
            "errors": sum(1 for r in rows if r["status"] == "error"),
            "checks": [r["id"] for r in rows],
        }


VERDICTS = ("pass", "flag", "review")


def _classify(
    classifier: ImageClassifier, image: ImageInput, cancel: threading.Event
) -> list[ImageScores]:
    return classifier.classify([image])
