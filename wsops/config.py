"""Settings of a wsops node: one frozen dataclass, filled from CLI flags and ``WSOPS_*`` env.

Each field declares its command-line presence next to it (``knob``: help text, and the flag and
environment variable when they differ from ``--field-name`` and ``WSOPS_FIELD_NAME``), or says
it has none (``internal``). ``wsops serve`` builds its options from ``knobs()`` and its
``Settings`` with ``from_cli``, so a field cannot lack its flag or be dropped on the way.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

MAX_JWT_LEEWAY = 300.0
KNOB = "wsops.knob"  # the key of a field's metadata holding its _Declared (None: no CLI knob)

T = TypeVar("T")
_SAME: Any = object()  # "the CLI default is the field's default"


def _unspecified(host: str) -> bool:
    """``0.0.0.0`` or ``::``: every interface when bound, no address to give other hosts."""
    try:
        return ip_address(host).is_unspecified
    except ValueError:
        return False


@dataclass(frozen=True)
class _Declared:
    """What ``knob`` records in a field's metadata; ``knobs()`` fills in the derived rest."""

    help: str
    flag: str | None
    env: str | None
    cli_type: Any
    cli_default: Any
    parse: Callable[[Any], Any] | None


def knob(default: T, help: str, *, flag: str | None = None, env: str | None = None,
         cli_type: Any = None, cli_default: Any = _SAME,
         parse: Callable[[Any], Any] | None = None) -> T:
    """A ``Settings`` field that is a user knob: a ``wsops serve`` flag and a ``WSOPS_*`` variable.

    ``flag`` defaults to ``--field-name``, ``env`` to ``WSOPS_FIELD_NAME``. When the command
    line takes another form than the field holds, ``cli_type`` is the type of the CLI value,
    ``cli_default`` its default (else the field's) and ``parse`` turns it into the field's value.
    """
    declared = _Declared(help, flag, env, cli_type, cli_default, parse)
    return dataclasses.field(default=default, metadata={KNOB: declared})


def internal(default: T, why: str) -> T:
    """A ``Settings`` field deliberately without a flag or env var (``why`` says why)."""
    return dataclasses.field(default=default, metadata={KNOB: None, "why": why})


def _no_admin_port(port: int) -> int | None:
    return None if port < 0 else port


def _read_pem(path: Path | None) -> str | None:
    return path.read_text() if path is not None else None


def _broker_ack(value: str) -> str:
    if value not in ("master", "replica"):
        raise ValueError(f"--broker-ack must be 'master' or 'replica', not {value!r}")
    return value


def _origins(origins: list[str] | None) -> tuple[str, ...]:
    return tuple(origins or ())


@dataclass(frozen=True)
class Settings:
    """Every knob of the bundled server, each a ``wsops serve`` flag and a ``WSOPS_*`` variable."""

    host: str = knob("127.0.0.1", "Address of the WebSocket listener.")
    port: int = knob(8765, "Port of the WebSocket listener (endpoint /ws).")
    admin_host: str = knob("127.0.0.1", "Address of the admin listener (/healthz, /readyz).")
    admin_port: int | None = knob(
        9765, "Port of the admin listener; -1 disables it.",
        cli_type=int, parse=_no_admin_port)  # None: no admin listener
    admin_max_connections: int = knob(
        64, "Connections the admin listener holds at once (idle keep-alive ones too); more get "
        "HTTP 503 and are closed at once. Each must send its request within "
        "--handshake-timeout.")
    admin_advertise_url: str | None = knob(  # None: the bound address, a wildcard one replaced
        None, "Admin URL other hosts reach this node at, for the fleet registry (default: "
        "http://ADMIN_HOST:ADMIN_PORT, a wildcard host such as 0.0.0.0 replaced by a routable "
        "address of this host).")
    api_host: str = knob("127.0.0.1", "Address of the server API's listener (POST /api/*).")
    api_port: int | None = knob(
        None, "Port of the server API for backends (publish, presence, history, rooms, "
        "disconnect, ...; keys in WSOPS_API_KEYS); -1 (default) leaves it off.",
        cli_type=int, cli_default=-1, parse=_no_admin_port)  # None: no API listener
    api_max_connections: int = knob(
        256, "Connections the API listener holds at once; more get HTTP 503.")
    api_max_body: int = knob(
        1 << 20, "Largest request body the server API reads, in bytes (HTTP 413 past it).")
    api_rate: float = knob(
        1000.0, "Server API calls per second each API key may make (a batch counts as its "
        "calls); twice as many at once.")
    api_signatures: bool = knob(
        False, "Require signed server API requests (X-Wsops-Timestamp, X-Wsops-Signature: an "
        "HMAC-SHA256 of the request under its key; replays refused).")
    allow_anonymous: bool = knob(False, "Accept connections without a token (demos only).")
    broker: str = knob(
        "memory", "Broker: 'memory' (embedded default), redis://HOST:PORT/DB for a fleet, "
        "redis+sentinel://SENTINELS/MASTER to follow Sentinel failovers (SENTINELS: HOST:PORT, "
        "comma-separated; MASTER: the name they watch), or redis+cluster://HOST:PORT[,...] "
        "for a Redis Cluster (seed nodes; rooms spread over its shards) (options: "
        "?prefix=wsops&heartbeat=2&timeout=2; sentinel_password=...).")
    broker_ack: str = knob(
        "master", "When a publish is acknowledged: 'master' (stored in Redis; a master that "
        "dies before replicating loses it) or 'replica' (also on a replica, WAIT 1: slower, "
        "and refused while Redis is down instead of held in island mode).",
        parse=_broker_ack)
    jwt_secret: str | None = knob(None, "HS256 shared secret for tokens.")
    jwt_public_key: str | None = knob(  # the PEM text; the CLI takes the file
        None, "PEM file with the RS256 public key for tokens.",
        cli_type=Path | None, parse=_read_pem)
    jwt_audience: str | None = knob(
        None, "Required 'aud' of tokens (unset: a token with an 'aud' is refused, as issued "
        "for another service).")
    jwt_issuer: str | None = knob(None, "Required 'iss' of tokens.")
    jwt_leeway: float = knob(
        0.0, "Seconds of clock skew allowed on a token's exp, nbf and iat (0-300); a "
        "connection then closes at exp plus this.")
    jwt_rooms_claim: str = knob("rooms", "Claim listing the rooms a token grants.")
    allowed_origins: tuple[str, ...] = knob(
        (), "Allowed browser Origin (repeat); none = any origin.",
        flag="--allowed-origin", cli_type=list[str] | None, cli_default=None, parse=_origins)
    heartbeat: float = knob(
        20.0, "Seconds between server pings; dead peers close in 1.5x this.")
    max_message_size: int = knob(
        64 * 1024, "Largest accepted frame in bytes (bigger: close 1009).")
    max_rooms_per_connection: int = knob(100, "Rooms one connection may subscribe to.")
    max_connections: int = knob(10_000, "Connections per node; more get HTTP 503.")
    max_connections_per_ip: int = knob(
        0, "Connections per client IP address; more get HTTP 429. 0 = unlimited: keep it 0 "
        "behind a load balancer or proxy, where every connection comes from its address.")
    handshake_timeout: float = knob(
        10.0, "Seconds a new TCP connection may take to send its whole upgrade request before "
        "it is closed (slowloris).")
    # Python's 700 makes full GCs of a 10K-connection heap, ~300 ms each, come every few seconds.
    gc_threshold: int = knob(
        10_000, "Allocations between young garbage collections (fewer full collections, each a "
        "pause of the event loop); 0 = Python's default (700).")
    gc_freeze_interval: float = knob(
        0.25, "Seconds between freezes of long-lived state (connections, history) out of garbage "
        "collections: each collection then walks only what is new, not every connection; "
        "0 = off.")
    backlog: int = knob(  # a connection storm overflows aiohttp's 128
        4096, "Listen queue for new connections (the kernel caps it at net.core.somaxconn); "
        "too small, a connection storm waits on SYN retries.")
    rate_limit: float = knob(100.0, "Messages per second per connection (token bucket).")
    rate_burst: int = knob(200, "Burst size of the rate limit.")
    rate_limit_strikes: int = knob(
        50, "A connection whose messages the rate limit refuses this many times in a row is "
        "closed with 1008 (until then each refusal is a rate_limited error).")
    send_queue_bytes: int = knob(
        1024 * 1024, "Per-connection send queue; overflow closes with 4000.")
    history_size: int = knob(1000, "Messages kept per room for history and resume.")
    history_ttl: float = knob(300.0, "Seconds a message stays in history.")
    history_room_bytes: int = knob(
        8 << 20, "Bytes of messages kept per room (oldest go first).")
    history_memory: int = knob(
        256 << 20, "Bytes of history kept node-wide, every room together (past it the node's "
        "oldest messages go first).")
    drain_batch: int = knob(100, "Connections closed per batch on drain/SIGTERM.")
    drain_interval: float = knob(0.5, "Seconds between drain batches (jittered).")
    drain_deadline: float = knob(30.0, "Seconds a drain may take before the rest are closed.")
    drain_spread: float = knob(
        5.0, "Seconds over which each drained client is asked to spread its reconnect (a hint "
        "in its 1012 close, honoured by the wsops clients; 0-60, 0 asks nothing).")
    instrument: bool = knob(True, "Metrics, runtime health and traces (off: bare server).")
    runtime_metrics: bool = knob(True, "Event-loop lag, RSS, CPU, fds and GC metrics.")
    tracing: bool = knob(
        True, "OpenTelemetry spans (exported when OTEL_EXPORTER_OTLP_* is set).")
    trace_sample_ratio: float | None = knob(
        None, "Share of root traces sampled (default: OTEL_TRACES_SAMPLER[_ARG], else 0.01); a "
        "client's sampled flag always wins.")
    slo_seconds: float = knob(
        0.010, "Delivery-latency SLO: a histogram boundary sits here.")
    workers: int = knob(
        1, "Processes serving the port together (SO_REUSEPORT), one node to clients. Above 1 "
        "this process supervises them: rooms span workers through the --broker (with 'memory', "
        "a private redis-server it starts), the admin listener serves the node: /metrics as "
        "per-worker series labelled worker=\"0..N-1\", /admin/stats summed, /readyz ready when "
        "every worker is; a worker that dies is restarted.")

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
        if self.gc_freeze_interval < 0:
            problems.append("gc_freeze_interval must be 0 (off) or positive")
        if self.gc_threshold < 0:
            problems.append("gc_threshold must be 0 (Python's default) or positive")
        if not 1 <= self.workers <= 256:
            problems.append("workers must be within [1, 256]")
        if self.history_size < 0 or self.drain_interval < 0:
            problems.append("history_size and drain_interval must be >= 0")
        if self.history_room_bytes < 0 or self.history_memory < 0:
            problems.append("history_room_bytes and history_memory must be >= 0")
        if not 0 <= self.drain_spread <= 60:
            problems.append("drain_spread must be within [0, 60] seconds")
        if not 0 <= self.jwt_leeway <= MAX_JWT_LEEWAY:
            problems.append(f"jwt_leeway must be within [0, {MAX_JWT_LEEWAY:g}] seconds")
        if self.admin_max_connections < 1:
            problems.append("admin_max_connections must be positive")
        if self.api_max_connections < 1 or self.api_max_body < 1024 or self.api_rate <= 0:
            problems.append("api_max_connections and api_rate must be positive, api_max_body "
                            ">= 1024")
        if self.api_port and self.api_port in (self.port, self.admin_port):
            problems.append("api_port must differ from port and admin_port (the API never "
                            "shares their listeners)")
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


@dataclass(frozen=True)
class Knob:
    """One user knob of ``Settings``, as ``wsops serve`` offers it."""

    name: str  # the Settings field
    help: str
    flag: str  # "--field-name" unless declared otherwise
    env: str  # "WSOPS_FIELD_NAME" unless declared otherwise
    cli_type: Any  # the type of the command-line value (the field's unless declared otherwise)
    cli_default: Any
    parse: Callable[[Any], Any]  # command-line value -> field value


def knobs(cls: type[Any] = Settings) -> tuple[Knob, ...]:
    """The knobs of ``cls`` (``Settings``) in field order; a field declaring neither ``knob``
    nor ``internal`` is a TypeError, so none can be added without its flag."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        if KNOB not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} declares neither knob(...) nor "
                            "internal(...)")
        declared: _Declared | None = f.metadata[KNOB]
        if declared is None:
            continue
        found.append(Knob(
            name=f.name,
            help=declared.help,
            flag=declared.flag or "--" + f.name.replace("_", "-"),
            env=declared.env or "WSOPS_" + f.name.upper(),
            cli_type=hints[f.name] if declared.cli_type is None else declared.cli_type,
            cli_default=f.default if declared.cli_default is _SAME else declared.cli_default,
            parse=declared.parse or _identity,
        ))
    return tuple(found)


def _identity(value: Any) -> Any:
    return value


def from_cli(values: Mapping[str, Any]) -> Settings:
    """``Settings`` from command-line values keyed by field name (every knob must be there)."""
    return Settings(**{k.name: k.parse(values[k.name]) for k in knobs()})
