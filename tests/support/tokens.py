"""JWTs for tests: a shared HS256 secret, an RSA key pair, and tokens signed with them."""

from __future__ import annotations

import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SECRET = "s3cret-for-tests-only-" + "0123456789abcdef" * 4
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = _KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
PUBLIC_PEM = _KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()


def claims(**over: Any) -> dict[str, Any]:
    # Tokens are built at import time: valid for long enough to outlast a slow suite.
    return {"sub": "alice", "exp": int(time.time()) + 6 * 3600, "rooms": ["chat:*", "news"],
            **over}


def hs(**over: Any) -> str:
    return jwt.encode(claims(**over), SECRET, algorithm="HS256")
