"""How boxes of one fleet know each other without the key ever travelling.

- The mDNS record carries ``fleet=<id>``, an HMAC of a fixed label under the key: boxes with the
  same key see the same id, nobody learns the key from it.
- Every request between boxes carries ``X-Appliance-Fleet: <box id>:<unix time>:<signature>``,
  the HMAC-SHA256 of ``box id : time : method : path`` under the key; the receiver accepts it
  within a minute of its own clock.
- A box proves itself to a newcomer by signing the newcomer's random challenge.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Appliance-Fleet"
WINDOW_S = 60.0


def _mac(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def fleet_id(key: str) -> str:
    return _mac(key, "appliance fleet id")[:16]


def sign(key: str, box_id: str, method: str, path: str, now: float | None = None) -> str:
    stamp = str(int(time.time() if now is None else now))
    return f"{box_id}:{stamp}:{_mac(key, f'{box_id}:{stamp}:{method.upper()}:{path}')}"


def verify(key: str, header: str, method: str, path: str, now: float | None = None) -> str | None:
    """The signing box's id, or None for a header that is forged, stale or malformed."""
    try:
        box_id, stamp, signature = header.split(":", 2)
        at = int(stamp)
    except ValueError:
        return None
    if abs((time.time() if now is None else now) - at) > WINDOW_S:
        return None
    expected = _mac(key, f"{box_id}:{stamp}:{method.upper()}:{path}")
    return box_id if hmac.compare_digest(expected, signature) else None


def prove(key: str, box_id: str, challenge: str) -> str:
    return _mac(key, f"proof:{box_id}:{challenge}")


def proof_ok(key: str, box_id: str, challenge: str, proof: str) -> bool:
    return hmac.compare_digest(prove(key, box_id, challenge), proof)
