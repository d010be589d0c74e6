"""The default choice of hardware profile: the most specific match, generic profiles last."""

from __future__ import annotations

from appliance import hookimpl
from appliance.hardware.facts import HardwareFacts
from appliance.hardware.profiles import HardwareProfile, best_profile


@hookimpl(trylast=True)
def select_hardware_profile(
    facts: HardwareFacts, profiles: list[HardwareProfile]
) -> HardwareProfile:
    return best_profile(facts, profiles)
