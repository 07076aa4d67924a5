"""Settings of a wsops node: one frozen dataclass, filled from CLI flags and ``WSOPS_*`` env."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

MAX_JWT_LEEWAY = 300.0


def _unspecified(host: str) -> bool:
    """``0.0.0.0`` or ``::``: every interface when bound, no address to give other hosts."""
    try:
        return ip_address(host).is_unspecified
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    """Every knob of the bundled server. The CLI documents each as a flag and an env var."""

    host: str = "127.0.0.1"
    port: int = 8765
    admin_host: str = "127.0.0.1"
    admin_port: int | None = 9765
    allow_anonymous: bool = False
    broker: str = "memory"
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_rooms_claim: str = "rooms"
    allowed_origins: tuple[str, ...] = ()
    heartbeat: float = 20.0
    max_message_size: int = 64 * 1024
    max_rooms_per_connection: int = 100
    max_connections: int = 10_000
    max_connections_per_ip: int = 0  # 0: unlimited (behind a load balancer all share its address)
    handshake_timeout: float = 10.0  # seconds a client may take to send its whole upgrade request
    gc_threshold: int = 10_000  # allocations between young GCs (Python's 700 makes full GCs of
    # a 10K-connection heap, ~300 ms each, come every few seconds); 0 keeps Python's default
    backlog: int = 4096  # listen queue: a connection storm overflows aiohttp's 128 (SYN retries)
    rate_limit: float = 100.0
    rate_burst: int = 200
    rate_limit_strikes: int = 50
    send_queue_bytes: int = 1024 * 1024
    history_size: int = 1000
    history_ttl: float = 300.0
    history_room_bytes: int = 8 << 20  # one room's retained messages, in bytes
    history_memory: int = 256 << 20  # every room's retained messages on this node, in bytes
    drain_batch: int = 100
    drain_interval: float = 0.5
    drain_deadline: float = 30.0
    instrument: bool = True
    runtime_metrics: bool = True
    tracing: bool = True
    trace_sample_ratio: float | None = None
    slo_seconds: float = 0.010
    workers: int = 1  # > 1: a supervisor runs this many processes on the port (SO_REUSEPORT)
    jwt_leeway: float = 0.0  # seconds of clock skew allowed on a token's exp, nbf and iat
    admin_max_connections: int = 64  # the admin listener's cap; past it: 503 and closed
    admin_advertise_url: str | None = None  # the admin URL for the fleet registry (None: the
    # bound address, a wildcard one replaced by a routable address of this host)

    def __post_init__(self) -> None:
        problems = []
        for name in ("port", "max_message_size", "max_rooms_per_connection", "max_connections",
                     "backlog",
                     "rate_burst", "rate_limit_strikes", "send_queue_bytes", "drain_batch"):
            if getattr(self, name) < (0 if name == "port" else 1):
                problems.append(f"{name} must be positive")
        if self.max_connections_per_ip < 0:
            problems.append("max_connections_per_ip must be >= 0 (0: unlimited)")
        for name in ("heartbeat", "rate_limit", "history_ttl", "drain_deadline", "slo_seconds",
                     "handshake_timeout"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0")
        if self.gc_threshold < 0:
            problems.append("gc_threshold must be 0 (Python's default) or positive")
        if not 1 <= self.workers <= 256:
            problems.append("workers must be within [1, 256]")
        if self.history_size < 0 or self.drain_interval < 0:
            problems.append("history_size and drain_interval must be >= 0")
        if self.history_room_bytes < 0 or self.history_memory < 0:
            problems.append("history_room_bytes and history_memory must be >= 0")
        if not 0 <= self.jwt_leeway <= MAX_JWT_LEEWAY:
            problems.append(f"jwt_leeway must be within [0, {MAX_JWT_LEEWAY:g}] seconds")
        if self.admin_max_connections < 1:
            problems.append("admin_max_connections must be positive")
        if self.admin_advertise_url is not None:
            url = urlsplit(self.admin_advertise_url)
            if url.scheme not in ("http", "https") or not url.hostname or _unspecified(
                    url.hostname):
                problems.append("admin_advertise_url must be an http:// or https:// URL whose "
                                "host is not a wildcard address (0.0.0.0, ::)")
        ratio = self.trace_sample_ratio
        if ratio is not None and not 0.0 <= ratio <= 1.0:
            problems.append("trace_sample_ratio must be within [0, 1]")
        if problems:
            raise ValueError("invalid settings: " + "; ".join(problems))

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
