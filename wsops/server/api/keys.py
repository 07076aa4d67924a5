"""Who may call the server API: API keys, and optionally signed requests (no I/O).

A caller sends ``Authorization: Bearer KEY``; ``KEY`` must be one of the node's keys
(``WSOPS_API_KEYS``, comma-separated: several at once for rotation), compared in constant time
against every one of them. With signatures required (``--api-signatures``) it also sends

    X-Wsops-Timestamp: UNIX_SECONDS
    X-Wsops-Signature: sha256=HEX(HMAC-SHA256(KEY, "TIMESTAMP\\nMETHOD\\nPATH\\n" + BODY))

and a request is refused when its timestamp is further than the replay window from the node's
clock, or when the same signature was already accepted within the window (a replay).
"""

from __future__ import annotations

import hmac
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from wsops.apisign import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "ApiAuthError", "ApiKeys", "keys_from_env",
           "sign"]

KEYS_ENV: Final = "WSOPS_API_KEYS"
MIN_KEY_LENGTH: Final = 16
DEFAULT_WINDOW: Final = 300.0  # seconds a signed request is valid either side of the clock
MAX_REMEMBERED: Final = 100_000  # signatures kept to refuse replays (bounded memory)


class ApiAuthError(Exception):
    """Why a request is refused (HTTP 401); the text says what to fix, never a key."""


def keys_from_env(environ: dict[str, str] | None = None) -> list[str]:
    """The node's API keys from ``WSOPS_API_KEYS`` (ValueError for a key too short)."""
    raw = (environ if environ is not None else dict(os.environ)).get(KEYS_ENV, "")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    for i, key in enumerate(keys):
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"{KEYS_ENV}: key {i + 1} has {len(key)} characters; use at least "
                             f"{MIN_KEY_LENGTH} (e.g. python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))')")
    return keys


class ApiKeys:
    """The node's keys and, with ``signatures``, the replay guard of signed requests."""

    def __init__(self, keys: Sequence[str], *, signatures: bool = False,
                 window: float = DEFAULT_WINDOW, remember: int = MAX_REMEMBERED) -> None:
        if not keys:
            raise ValueError(f"the server API needs at least one key ({KEYS_ENV})")
        self.keys = [k.encode() for k in keys]
        self.signatures = signatures
        self.window = window
        self.remember = remember
        self._seen: OrderedDict[str, float] = OrderedDict()  # signature -> its timestamp

    def key_of(self, authorization: str | None) -> str:
        """The key a request carries, if it is one of ours (ApiAuthError otherwise)."""
        if not authorization:
            raise ApiAuthError("no API key: send Authorization: Bearer KEY")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiAuthError("send the API key as Authorization: Bearer KEY")
        candidate = given.strip().encode()
        found: bytes | None = None
        for key in self.keys:  # every key compared, whichever matches
            if hmac.compare_digest(candidate, key):
                found = key
        if found is None:
            raise ApiAuthError("unknown API key")
        return found.decode()

    def check(self, authorization: str | None, timestamp: str | None, signature: str | None,
              method: str, path: str, body: bytes, now: float) -> str:
        """The request's key; ApiAuthError when the key, or with signatures its signature, is
        not good. A good signed request is remembered until it leaves the window."""
        key = self.key_of(authorization)
        if not self.signatures:
            return key
        if not timestamp or not signature:
            raise ApiAuthError(f"this node requires signed requests: send {TIMESTAMP_HEADER} "
                               f"and {SIGNATURE_HEADER} (see the README)")
        try:
            at = float(timestamp)
        except ValueError:
            raise ApiAuthError(f"{TIMESTAMP_HEADER} must be Unix seconds") from None
        if abs(now - at) > self.window:
            raise ApiAuthError(f"{TIMESTAMP_HEADER} is {at - now:+.0f} s from this node's "
                               f"clock (at most {self.window:g} s either way)")
        if not hmac.compare_digest(signature.encode(),
                                   sign(key, timestamp, method, path, body).encode()):
            raise ApiAuthError("bad signature")
        self._forget(now)
        if signature in self._seen:
            raise ApiAuthError("this signed request was already accepted (a replay)")
        if len(self._seen) >= self.remember:
            raise ApiAuthError("too many signed requests in the replay window: retry shortly")
        self._seen[signature] = at
        return key

    def _forget(self, now: float) -> None:
        """Drop remembered signatures whose timestamp has left the window. Kept in arrival
        order, so a timestamp older than its successors is dropped late, never early."""
        seen = self._seen
        while seen:
            _, at = next(iter(seen.items()))
            if now - at <= self.window:
                break
            seen.popitem(last=False)
