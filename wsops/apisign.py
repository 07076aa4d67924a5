"""How a server API request is signed: shared by the node (``wsops.server.api.keys``) and
``wsops.client.ApiClient``, which share nothing else.

    X-Wsops-Timestamp: UNIX_SECONDS
    X-Wsops-Signature: sha256=HEX(HMAC-SHA256(KEY, "TIMESTAMP\\nMETHOD\\nPATH\\n" + BODY))
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

TIMESTAMP_HEADER: Final = "X-Wsops-Timestamp"
SIGNATURE_HEADER: Final = "X-Wsops-Signature"


def sign(key: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The ``X-Wsops-Signature`` value of a request."""
    message = f"{timestamp}\n{method.upper()}\n{path}\n".encode() + body
    return "sha256=" + hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
