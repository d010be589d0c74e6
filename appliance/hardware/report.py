"""What `appliance detect` and GET /appliance/hardware report: facts, profile, choice, reasons."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appliance.hardware.calibrate import as_dict

if TYPE_CHECKING:
    from appliance.core import Appliance


def missing_models(appliance: Appliance) -> list[dict[str, str]]:
    """Chosen models that are not on the box, with the command that fetches them."""
    choice = appliance.choice
    if choice is None:
        return []
    wanted = []
    if choice.chat is not None:
        wanted.append((choice.chat.model, choice.chat.quant))
    wanted.append((choice.embed_model, ""))
    wanted.append((choice.transcribe_model, ""))
    out = []
    ids = {m.id for m in appliance.catalog.models}
    for model_id, quant_name in wanted:
        if not model_id:
            continue
        if model_id not in ids:
            out.append({"model": model_id, "command": "", "note": "not in this box's catalog yet"})
            continue
        model = appliance.catalog.get(model_id)
        quant = model.quant(quant_name or None)
        if appliance.store.has(model, quant):
            continue
        command = f"appliance models fetch {model_id} --quant {quant.name}"
        if not quant.pinned:
            command += " --sha256 <sha256 published by its source>"
        out.append({"model": model_id, "command": command, "note": ""})
    return out


def hardware_report(appliance: Appliance) -> dict[str, Any]:
    facts = appliance.facts
    return {
        "facts": facts.as_dict() if facts else {},
        "profile": appliance.profile.as_dict(),
        "choice": appliance.choice.as_dict() if appliance.choice else None,
        "calibration": as_dict(appliance.calibration),
        "missing": missing_models(appliance),
        "running": appliance.scheduler.usage(),
        "recent_tokens_per_second": dict(appliance.metrics.recent_speed),
    }
