"""JWT verification before the upgrade, and room grants from the token's claims.

``exp`` and ``sub`` are required; ``nbf`` and ``iat`` are checked when present; all three allow
``leeway`` seconds of clock skew (``--jwt-leeway``). ``aud``: with an audience configured it is
required and must match; without one, a token that carries an ``aud`` is refused, since it was
issued for some other service. ``iss``: required and matched when configured, else not checked.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm

from wsops.server.core.identity import Identity

MAX_TOKEN_BYTES = 8192


class AuthError(Exception):
    """The request cannot be authenticated; the reason is safe to show the client."""


@dataclass(frozen=True)
class AuthConfig:
    """How tokens are checked. HS256 needs ``secret``; RS256 needs ``public_key`` (PEM)."""

    secret: str | None = None
    public_key: str | None = None
    audience: str | None = None
    issuer: str | None = None
    rooms_claim: str = "rooms"
    allow_anonymous: bool = False
    leeway: float = 0.0

    @property
    def algorithms(self) -> list[str]:
        algs = []
        if self.secret:
            algs.append("HS256")
        if self.public_key:
            algs.append("RS256")
        return algs


class Authenticator:
    """Verifies a bearer token into an Identity, or raises AuthError."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        if not config.algorithms and not config.allow_anonymous:
            raise ValueError(
                "no way to authenticate: set a JWT secret (--jwt-secret) or public key "
                "(--jwt-public-key), or run with --allow-anonymous"
            )
        # Parsed once, here: a key that is not one fails the start, not every RS256 token
        # (PyJWT would parse the PEM again on each).
        self.public_key = rsa_public_key(config.public_key) if config.public_key else None

    def authenticate(self, token: str | None) -> Identity:
        cfg = self.config
        if not token:
            if cfg.allow_anonymous:
                return Identity(f"anon-{secrets.token_hex(6)}", ("*",), anonymous=True)
            raise AuthError("missing token")
        if not cfg.algorithms:
            raise AuthError("tokens are not accepted by this server")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {exc}") from None
        alg = header.get("alg")
        # Pick the key by the configured algorithm, never by trusting the header alone: this is
        # what stops HS/RS confusion (a public key used as an HMAC secret) and ``alg: none``.
        if alg == "HS256" and cfg.secret:
            key: Any = cfg.secret
        elif alg == "RS256" and self.public_key is not None:
            key = self.public_key
        else:
            raise AuthError(f"algorithm {str(alg)[:16]!r} is not accepted")
        try:
            # verify_aud stays on (PyJWT's default): with no audience configured PyJWT refuses
            # a token that names one, which is what PROTOCOL.md promises.
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError(_audience_refusal(cfg.audience)) from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        if cfg.audience is None and "aud" in claims:  # an empty one, which PyJWT lets through
            raise AuthError(_audience_refusal(None))
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            raise AuthError("'sub' must be a non-empty string")
        rooms = claims.get(cfg.rooms_claim, [])
        if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
            raise AuthError(f"claim {cfg.rooms_claim!r} must be a list of strings")
        exp = claims.get("exp")
        # Accepted up to ``leeway`` past exp, so it expires (closes the connection) then too.
        expires_at = float(exp) + cfg.leeway if exp is not None else None
        jti = claims.get("jti")
        return Identity(sub, tuple(rooms), expires_at,
                        jti=jti if isinstance(jti, str) and 0 < len(jti) <= 256 else None)


def rsa_public_key(pem: str) -> RSAPublicKey:
    """The RSA public key in ``pem``, or a ValueError that says what the file holds instead."""
    try:
        key = RSAAlgorithm(RSAAlgorithm.SHA256).prepare_key(pem)
    except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise ValueError(f"--jwt-public-key: not an RSA public key in PEM ({exc})") from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError("--jwt-public-key: this is a private key; give the server the public "
                         "key only (openssl rsa -in KEY -pubout)")
    return key


def _audience_refusal(audience: str | None) -> str:
    if audience is None:
        return ("token has an 'aud' claim but this server accepts no audience: it was issued "
                "for another service (set --jwt-audience to accept tokens for this one)")
    return "token audience does not match this server's (--jwt-audience)"


def token_from_request(authorization: str | None, query_token: str | None) -> str | None:
    """The bearer token from the Authorization header, else from ``?token=``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise AuthError("Authorization header must be 'Bearer <token>'")
    return query_token or None
