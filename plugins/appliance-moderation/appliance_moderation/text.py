"""``/v1/moderations`` for text: each of OpenAI's categories is a policy question put to the
box's chat model (held to the same JSON answer as image policies), all in one batch."""

from __future__ import annotations

import asyncio

from appliance import ModerationResult, TextModerator
from appliance_moderation.checks import Checks
from appliance_moderation.policy import Answer, Question

CATEGORY_QUESTIONS = {
    "harassment": "Does the text harass, bully or demean someone?",
    "harassment/threatening": "Does the text harass someone and threaten them with harm?",
    "hate": "Does the text express hate against people for who they are (race, religion, sex)?",
    "hate/threatening": "Does the text express hate and call for violence against a group?",
    "illicit": "Does the text give advice or instructions for committing a crime?",
    "illicit/violent": "Does the text give instructions for violent wrongdoing or weapons?",
    "self-harm": "Does the text promote, encourage or depict self-harm or suicide?",
    "self-harm/intent": "Does the writer say they intend to harm or kill themselves?",
    "self-harm/instructions": "Does the text give instructions for self-harm or suicide?",
    "sexual": "Is the text sexually explicit?",
    "sexual/minors": "Is the text sexual content involving anyone under 18?",
    "violence": "Does the text depict or threaten physical violence?",
    "violence/graphic": "Does the text describe death, injury or violence in graphic detail?",
}
CONFIDENCE = 0.7
SYSTEM = (
    "You check messages against a company's policy. Answer the question about the text with "
    "JSON: answer is yes, no or unsure; confidence is 0 to 1; reason is one short sentence."
)


QUESTIONS = [Question(id=c.replace("/", "."), text=q) for c, q in CATEGORY_QUESTIONS.items()]


def score(answer: Answer) -> float:
    if answer.answer == "yes":
        return answer.confidence
    if answer.answer == "no":
        return 1.0 - answer.confidence
    return 0.5


class PolicyModerator(TextModerator):
    def __init__(self, checks: Checks) -> None:
        self.checks = checks

    @property
    def model(self) -> str:
        name = self.checks.appliance.default_model("chat")
        return f"policy:{name or 'none'}"

    async def moderate(self, texts: list[str], caller: str) -> list[ModerationResult]:
        return list(await asyncio.gather(*(self._one(text, caller) for text in texts)))

    async def _one(self, text: str, caller: str) -> ModerationResult:
        context = f"The text to check:\n<<<\n{text}\n>>>"
        answers = await asyncio.gather(
            *(self.checks.ask(q, context, caller, SYSTEM) for q in QUESTIONS)
        )
        scores = {c: score(a) for c, a in zip(CATEGORY_QUESTIONS, answers, strict=True)}
        flags = {
            c: a.answer == "yes" and a.confidence >= CONFIDENCE
            for c, a in zip(CATEGORY_QUESTIONS, answers, strict=True)
        }
        return ModerationResult(any(flags.values()), scores, flags)
