"""Where a node's Redis is: one server, or the master that Redis Sentinel names.

- ``redis://[[USER]:PASSWORD@]HOST:PORT/DB`` (``rediss://`` for TLS): one Redis.
- ``redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]``
  (``rediss+sentinel://`` for TLS): the sentinels to ask and the name of the master they
  watch; the password is the master's (``sentinel_password=`` / ``sentinel_username=`` in the
  query when the sentinels have their own). Commands follow a failover through redis-py's
  Sentinel pool (every new connection asks the sentinels); the pub/sub feed asks through
  ``redis_link.Locator`` whenever it connects and while it is connected.
- ``redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]`` (``rediss+cluster://`` for
  TLS): seed nodes of a Redis Cluster (any reachable one tells the rest; ``redis_cluster``).

wsops' own options ride in the query (``prefix``, ``heartbeat``, ``timeout``) and are taken out
before redis-py sees the URL. Pure: ``redis_link`` connects.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

SCHEMES = ("redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster",
           "rediss+cluster")
ACKS = ("master", "replica")  # --broker-ack
FORMS = ("redis://HOST:PORT/DB, redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME or "
         "redis+cluster://HOST:PORT[,HOST:PORT...]")
_OURS = ("prefix", "heartbeat", "timeout")
_SENTINEL_AUTH = ("sentinel_username", "sentinel_password")


def is_redis_url(url: str) -> bool:
    return url.split("://", 1)[0] in SCHEMES and "://" in url


def check_broker(broker: str, ack: str) -> None:
    """Refuse, with a message naming the problem, a ``--broker`` that is neither ``memory`` nor
    a valid Redis URL, and ``--broker-ack replica`` without Redis (the embedded broker and the
    workers' private Redis have no replica)."""
    if broker in ("memory", ""):
        if ack != "master":
            raise ValueError("--broker-ack replica needs a Redis broker (there is no replica "
                             "of the embedded memory broker)")
        return
    if not is_redis_url(broker):
        raise ValueError(f"unknown broker {broker!r}: use 'memory' or {FORMS}")
    parse_broker_url(broker)


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """wsops' own query parameters of the broker URL (removed before redis-py sees it)."""

    prefix: str = "wsops"
    heartbeat: float = 2.0  # seconds between node heartbeats; a node is dead after 3
    timeout: float = 2.0  # command timeout; the pub/sub link is dead after 1.5x this silent


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """The master named ``master`` by the sentinels at ``sentinels``."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None
    tls: bool
    sentinel_username: str | None
    sentinel_password: str | None


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """A Redis Cluster, found through any of its ``seeds``."""

    seeds: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed broker URL: ``url`` for one Redis (redis-py's form, without wsops' options),
    ``sentinel`` or ``cluster``; ``shown`` is the URL without passwords, for stats and logs."""

    url: str | None
    sentinel: SentinelTarget | None
    shown: str
    cluster: ClusterTarget | None = None


def _bad(url: str, why: str) -> ValueError:
    return ValueError(f"bad broker URL {_redacted(url)!r}: {why}")


def _redacted(url: str) -> str:
    scheme, _, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in userinfo else user}@{hostpart}"


def _hostport(text: str, url: str, default: str = "26379") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, default
    host = host.strip("[]")  # an IPv6 address (urlsplit refused unbalanced brackets)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(url, f"{text!r} is not HOST:PORT")
    return host, int(port)


def parse_broker_url(url: str) -> tuple[Target, RedisOptions]:
    """Split a broker URL (the module doc's forms) into where Redis is and wsops' options;
    raises ValueError, naming the problem, on anything else."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(f"broker URL must be {FORMS}, not {_redacted(url)!r}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _bad(url, str(exc)) from None
    ours: dict[str, str] = {}
    auth: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OURS:
            ours[key] = value
        elif key in _SENTINEL_AUTH and scheme.endswith("+sentinel"):
            auth[key] = value
        else:
            rest.append((key, value))
    opts = RedisOptions()
    try:
        opts = RedisOptions(ours.get("prefix", opts.prefix),
                            float(ours.get("heartbeat", opts.heartbeat)),
                            float(ours.get("timeout", opts.timeout)))
    except ValueError:
        raise _bad(url, "heartbeat and timeout are seconds") from None
    if not opts.prefix or not opts.heartbeat > 0 or not opts.timeout > 0:
        raise _bad(url, "prefix must be set, heartbeat and timeout above 0")
    if scheme.endswith("+cluster"):
        if "{" in opts.prefix or "}" in opts.prefix:
            raise _bad(url, "a cluster prefix cannot hold { or } (the rooms' hash tags)")
        return _cluster(url, scheme, parts.netloc, parts.path, rest), opts
    if not scheme.endswith("+sentinel"):
        target = Target(urlunsplit(parts._replace(query=urlencode(rest))), None,
                        _shown(scheme, parts.hostname or "", parts.port, parts.path))
        return target, opts
    if rest:
        raise _bad(url, f"unknown option {rest[0][0]!r} (a sentinel URL takes prefix, "
                        "heartbeat, timeout, sentinel_username, sentinel_password)")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    sentinels = tuple(_hostport(h, url) for h in hosts.split(","))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise _bad(url, "the path must be /MASTER_NAME or /MASTER_NAME/DB")
    sentinel = SentinelTarget(
        sentinels, unquote(path[0]), int(path[1]) if len(path) == 2 else 0,
        unquote(user) or None, unquote(password) if userinfo and ":" in userinfo else None,
        scheme.startswith("rediss"), auth.get("sentinel_username") or None,
        auth.get("sentinel_password"))
    return Target(None, sentinel, f"{scheme}://{hosts}{parts.path}"), opts


def _cluster(url: str, scheme: str, netloc: str, path: str, rest: list[tuple[str, str]]
             ) -> Target:
    if rest:
        raise _bad(url, f"unknown option {rest[0][0]!r} (a cluster URL takes prefix, "
                        "heartbeat, timeout)")
    if path.strip("/"):
        raise _bad(url, "a cluster has no database number or name: no path after the seeds")
    userinfo, _, hosts = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    seeds = tuple(_hostport(h, url, "6379") for h in hosts.split(","))
    cluster = ClusterTarget(seeds, unquote(user) or None,
                            unquote(password) if ":" in userinfo else None,
                            scheme.startswith("rediss"))
    return Target(None, None, f"{scheme}://{hosts}", cluster)


def _shown(scheme: str, host: str, port: int | None, path: str) -> str:
    return f"{scheme}://{host}:{port}{path}" if port else f"{scheme}://{host}{path}"
