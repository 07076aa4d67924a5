"""``wsops serve``: run the bundled realtime server (embedded broker, or Redis for a fleet)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from wsops.config import Settings
from wsops.node.lifecycle import run
from wsops.node.supervisor import supervise

D = Settings()


def _opt(env: str, help: str) -> Any:
    """A Typer option read from ``WSOPS_<env>`` too, shown in ``--help``."""
    return typer.Option(envvar=f"WSOPS_{env}", help=help, show_envvar=True)


def serve(
    host: Annotated[str, _opt("HOST", "Address of the WebSocket listener.")] = D.host,
    port: Annotated[int, _opt("PORT", "Port of the WebSocket listener (endpoint /ws).")] = D.port,
    admin_host: Annotated[
        str, _opt("ADMIN_HOST", "Address of the admin listener (/healthz, /readyz).")
    ] = D.admin_host,
    admin_port: Annotated[
        int, _opt("ADMIN_PORT", "Port of the admin listener; -1 disables it.")
    ] = D.admin_port or 9765,
    admin_max_connections: Annotated[
        int, _opt("ADMIN_MAX_CONNECTIONS", "Connections the admin listener holds at once "
                  "(idle keep-alive ones too); more get HTTP 503 and are closed at once. Each "
                  "must send its request within --handshake-timeout.")
    ] = D.admin_max_connections,
    admin_advertise_url: Annotated[
        str | None, _opt("ADMIN_ADVERTISE_URL", "Admin URL other hosts reach this node at, for "
                         "the fleet registry (default: http://ADMIN_HOST:ADMIN_PORT, a wildcard "
                         "host such as 0.0.0.0 replaced by a routable address of this host).")
    ] = None,
    allow_anonymous: Annotated[
        bool, _opt("ALLOW_ANONYMOUS", "Accept connections without a token (demos only).")
    ] = False,
    broker: Annotated[str, _opt(
        "BROKER", "Broker: 'memory' (embedded default) or redis://HOST:PORT/DB for a fleet "
        "(options: ?prefix=wsops&heartbeat=2&timeout=2).")] = D.broker,
    jwt_secret: Annotated[
        str | None, _opt("JWT_SECRET", "HS256 shared secret for tokens.")
    ] = None,
    jwt_public_key: Annotated[
        Path | None, _opt("JWT_PUBLIC_KEY", "PEM file with the RS256 public key for tokens.")
    ] = None,
    jwt_audience: Annotated[
        str | None, _opt("JWT_AUDIENCE", "Required 'aud' of tokens (unset: a token with an "
                         "'aud' is refused, as issued for another service).")
    ] = None,
    jwt_issuer: Annotated[str | None, _opt("JWT_ISSUER", "Required 'iss' of tokens.")] = None,
    jwt_leeway: Annotated[
        float, _opt("JWT_LEEWAY", "Seconds of clock skew allowed on a token's exp, nbf and "
                    "iat (0-300); a connection then closes at exp plus this.")
    ] = D.jwt_leeway,
    jwt_rooms_claim: Annotated[
        str, _opt("JWT_ROOMS_CLAIM", "Claim listing the rooms a token grants.")
    ] = D.jwt_rooms_claim,
    allowed_origin: Annotated[
        list[str] | None,
        _opt("ALLOWED_ORIGINS", "Allowed browser Origin (repeat); none = any origin."),
    ] = None,
    heartbeat: Annotated[
        float, _opt("HEARTBEAT", "Seconds between server pings; dead peers close in 1.5x this.")
    ] = D.heartbeat,
    max_message_size: Annotated[
        int, _opt("MAX_MESSAGE_SIZE", "Largest accepted frame in bytes (bigger: close 1009).")
    ] = D.max_message_size,
    max_rooms_per_connection: Annotated[
        int, _opt("MAX_ROOMS_PER_CONNECTION", "Rooms one connection may subscribe to.")
    ] = D.max_rooms_per_connection,
    max_connections: Annotated[
        int, _opt("MAX_CONNECTIONS", "Connections per node; more get HTTP 503.")
    ] = D.max_connections,
    max_connections_per_ip: Annotated[
        int, _opt("MAX_CONNECTIONS_PER_IP", "Connections per client IP address; more get HTTP "
                  "429. 0 = unlimited: keep it 0 behind a load balancer or proxy, where every "
                  "connection comes from its address.")
    ] = D.max_connections_per_ip,
    handshake_timeout: Annotated[
        float, _opt("HANDSHAKE_TIMEOUT", "Seconds a new TCP connection may take to send its "
                    "whole upgrade request before it is closed (slowloris).")
    ] = D.handshake_timeout,
    gc_threshold: Annotated[
        int, _opt("GC_THRESHOLD", "Allocations between young garbage collections (fewer full "
                  "collections, each a pause of the event loop); 0 = Python's default (700).")
    ] = D.gc_threshold,
    backlog: Annotated[
        int, _opt("BACKLOG", "Listen queue for new connections (the kernel caps it at "
                  "net.core.somaxconn); too small, a connection storm waits on SYN retries.")
    ] = D.backlog,
    rate_limit: Annotated[
        float, _opt("RATE_LIMIT", "Messages per second per connection (token bucket).")
    ] = D.rate_limit,
    rate_burst: Annotated[int, _opt("RATE_BURST", "Burst size of the rate limit.")] = D.rate_burst,
    send_queue_bytes: Annotated[
        int, _opt("SEND_QUEUE_BYTES", "Per-connection send queue; overflow closes with 4000.")
    ] = D.send_queue_bytes,
    history_size: Annotated[
        int, _opt("HISTORY_SIZE", "Messages kept per room for history and resume.")
    ] = D.history_size,
    history_ttl: Annotated[
        float, _opt("HISTORY_TTL", "Seconds a message stays in history.")
    ] = D.history_ttl,
    history_room_bytes: Annotated[
        int, _opt("HISTORY_ROOM_BYTES", "Bytes of messages kept per room (oldest go first).")
    ] = D.history_room_bytes,
    history_memory: Annotated[
        int, _opt("HISTORY_MEMORY", "Bytes of history kept node-wide, every room together "
                  "(past it the node's oldest messages go first).")
    ] = D.history_memory,
    drain_batch: Annotated[
        int, _opt("DRAIN_BATCH", "Connections closed per batch on drain/SIGTERM.")
    ] = D.drain_batch,
    drain_interval: Annotated[
        float, _opt("DRAIN_INTERVAL", "Seconds between drain batches (jittered).")
    ] = D.drain_interval,
    drain_deadline: Annotated[
        float, _opt("DRAIN_DEADLINE", "Seconds a drain may take before the rest are closed.")
    ] = D.drain_deadline,
    instrument: Annotated[
        bool, _opt("INSTRUMENT", "Metrics, runtime health and traces (off: bare server).")
    ] = D.instrument,
    runtime_metrics: Annotated[
        bool, _opt("RUNTIME_METRICS", "Event-loop lag, RSS, CPU, fds and GC metrics.")
    ] = D.runtime_metrics,
    tracing: Annotated[
        bool, _opt("TRACING", "OpenTelemetry spans (exported when OTEL_EXPORTER_OTLP_* is set).")
    ] = D.tracing,
    trace_sample_ratio: Annotated[
        float | None,
        _opt("TRACE_SAMPLE_RATIO", "Share of root traces sampled (default: "
             "OTEL_TRACES_SAMPLER_ARG, else 0.01); a client's sampled flag always wins."),
    ] = None,
    slo_seconds: Annotated[
        float, _opt("SLO_SECONDS", "Delivery-latency SLO: a histogram boundary sits here.")
    ] = D.slo_seconds,
    workers: Annotated[int, _opt(
        "WORKERS", "Processes serving the port together (SO_REUSEPORT), one node to clients. "
        "Above 1 this process supervises them: rooms span workers through the --broker (with "
        "'memory', a private redis-server it starts), the admin listener serves the node: "
        "/metrics as per-worker series labelled worker=\"0..N-1\", /admin/stats summed, "
        "/readyz ready when every worker is; a worker that dies is restarted.")] = D.workers,
    no_uvloop: Annotated[bool, typer.Option(help="Use asyncio's own event loop.")] = False,
) -> None:
    """Run the realtime server (WebSocket at /ws) with its admin listener.

    Example: wsops serve --allow-anonymous --port 8765 --workers 2

    SIGTERM or Ctrl-C drains the node (readiness 503, connections closed with 1012 in batches;
    with --workers, every worker) and exits. Every option can also be set with the WSOPS_*
    variable shown.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings(
            host=host, port=port, admin_host=admin_host,
            admin_port=None if admin_port < 0 else admin_port,
            allow_anonymous=allow_anonymous, broker=broker, jwt_secret=jwt_secret,
            jwt_public_key=jwt_public_key.read_text() if jwt_public_key else None,
            jwt_audience=jwt_audience, jwt_issuer=jwt_issuer, jwt_rooms_claim=jwt_rooms_claim,
            jwt_leeway=jwt_leeway, admin_max_connections=admin_max_connections,
            admin_advertise_url=admin_advertise_url,
            allowed_origins=tuple(allowed_origin or ()), heartbeat=heartbeat,
            max_message_size=max_message_size, max_rooms_per_connection=max_rooms_per_connection,
            max_connections=max_connections, max_connections_per_ip=max_connections_per_ip,
            handshake_timeout=handshake_timeout, backlog=backlog, rate_limit=rate_limit,
            rate_burst=rate_burst,
            send_queue_bytes=send_queue_bytes, history_size=history_size, history_ttl=history_ttl,
            history_room_bytes=history_room_bytes, history_memory=history_memory,
            drain_batch=drain_batch, drain_interval=drain_interval, drain_deadline=drain_deadline,
            instrument=instrument, runtime_metrics=runtime_metrics, tracing=tracing,
            trace_sample_ratio=trace_sample_ratio, slo_seconds=slo_seconds, workers=workers,
        )
        if settings.workers > 1:
            code = supervise(settings, use_uvloop=not no_uvloop)
        else:
            code = run(settings, use_uvloop=not no_uvloop)
    except (ValueError, OSError) as exc:
        typer.secho(f"wsops serve: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if code:
        raise typer.Exit(code)
