"""Hardware facts, device profiles and the choice of models that fit."""
