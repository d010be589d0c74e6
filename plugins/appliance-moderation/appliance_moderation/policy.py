"""IT's policy: questions about an image, what answer counts as a violation, how severe it is,
and the thresholds that turn scores and answers into pass / flag / review.

```toml
name = "office"
[thresholds]
flag_score = 0.8    # a classifier's "nsfw" score at or above this: flag
pass_score = 0.2    # below this (and every answer clear and sure): pass
confidence = 0.7    # an answer counts as sure at or above this
[[question]]
id = "weapons"
text = "Does the image show a weapon?"
violation = "yes"   # the answer that breaks the policy
severity = "high"   # high: a sure violation flags; medium or low: it goes to a person
```
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from appliance import BadRequest, ImageScores

Verdict = Literal["pass", "flag", "review"]
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
FLAGGED_LABEL = "nsfw"


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flag_score: float = Field(default=0.8, ge=0, le=1)
    pass_score: float = Field(default=0.2, ge=0, le=1)
    confidence: float = Field(default=0.7, ge=0, le=1)


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    text: str = Field(min_length=3, max_length=500)
    violation: Literal["yes", "no"] = "yes"
    severity: Literal["high", "medium", "low"] = "high"


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    thresholds: Thresholds = Field(default_factory=Thresholds)
    questions: list[Question] = Field(default_factory=list, alias="question", max_length=100)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("use lower-case letters, digits, '.', '_' or '-' (at most 64)")
        return value

    @field_validator("questions")
    @classmethod
    def _unique(cls, value: list[Question]) -> list[Question]:
        ids = [q.id for q in value]
        if len(ids) != len(set(ids)):
            raise ValueError("question ids must be unique")
        return value

    def public(self) -> dict[str, Any]:
        return self.model_dump(by_alias=False)


DEFAULT = Policy(name="default", description="The classifier's scores alone, until IT adds one.")


def parse_policy(data: dict[str, Any]) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "policy"
        raise BadRequest(f"policy {where}: {first['msg']}", param=where) from None


def parse_policy_toml(text: str) -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadRequest(f"the policy is not valid TOML: {exc}") from None
    return parse_policy(data)


@dataclass
class Answer:
    question: str
    answer: Literal["yes", "no", "unsure"]
    confidence: float
    reason: str = ""


ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "enum": ["yes", "no", "unsure"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string", "maxLength": 300},
    },
    "required": ["answer", "confidence", "reason"],
}


@dataclass
class Decision:
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(policy: Policy, scores: list[ImageScores], answers: list[Answer]) -> Decision:
    """Clearly forbidden: flag; clearly fine: pass; anything uncertain: review (a person)."""
    limits = policy.thresholds
    flags: list[str] = []
    doubts: list[str] = []
    for result in scores:
        score = result.scores.get(FLAGGED_LABEL)
        if score is None:
            continue
        if score >= limits.flag_score:
            flags.append(f"{result.model}: {FLAGGED_LABEL} {score:.2f} >= {limits.flag_score}")
        elif score >= limits.pass_score:
            doubts.append(f"{result.model}: {FLAGGED_LABEL} {score:.2f} is neither clear nor low")
    by_id = {q.id: q for q in policy.questions}
    for answer in answers:
        question = by_id[answer.question]
        sure = answer.confidence >= limits.confidence
        if answer.answer == question.violation:
            text = f"{question.id}: answered {answer.answer} ({answer.confidence:.2f})"
            (flags if sure and question.severity == "high" else doubts).append(text)
        elif answer.answer == "unsure" or not sure:
            doubts.append(f"{question.id}: unsure ({answer.answer}, {answer.confidence:.2f})")
    if flags:
        return Decision("flag", flags + doubts)
    if doubts:
        return Decision("review", doubts)
    return Decision("pass", ["every score is low and every answer is clear"])
