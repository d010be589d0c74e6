"""How boxes of one fleet know each other without the key ever travelling.

- The mDNS record carries ``fleet=<id>``, an HMAC of a fixed label under the key: boxes with the
  same key see the same id, nobody learns the key from it.
- Every request between boxes carries ``X-Appliance-Fleet: <box id>:<unix time>:<signature>``,
  the HMAC-SHA256 of ``box id : time : method : path`` under the key; the receiver accepts it
  within a minute of its own clock.
- A box proves itself to a newcomer by signing the newcomer's random challenge together with
  the sha256 of its own TLS certificate. The newcomer reads the certificate the peer presents,
  sends the challenge over a connection pinned to it, checks that the proof names it, and pins it
  for every later request: a box in the middle with a certificate of its own gets nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from pathlib import Path

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


def prove(key: str, box_id: str, challenge: str, cert_sha256: str = "") -> str:
    """``cert_sha256``: the prover's TLS certificate (DER) digest, "" over plain HTTP."""
    return _mac(key, f"proof:{box_id}:{challenge}:{cert_sha256}")


def proof_ok(key: str, box_id: str, challenge: str, proof: str, cert_sha256: str = "") -> bool:
    return hmac.compare_digest(prove(key, box_id, challenge, cert_sha256), proof)


def cert_sha256(pem_path: Path | None) -> str:
    """The sha256 of the first certificate in a PEM file (as a TLS peer sees it), or ""."""
    if pem_path is None:
        return ""
    der = ssl.PEM_cert_to_DER_cert(pem_path.read_text())
    return hashlib.sha256(der).hexdigest()
