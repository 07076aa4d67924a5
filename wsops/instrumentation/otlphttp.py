"""OTLP/HTTP export of encoded trace requests, configured by the standard variables.

Reads what the SDK's OTLP/HTTP exporter reads: ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` (the
generic one gets ``/v1/traces`` appended), ``..._HEADERS`` (``k=v,k2=v2``, values URL-encoded),
``..._COMPRESSION`` (``gzip``, ``deflate`` or ``none``), ``..._TIMEOUT`` (seconds, as the Python
exporter reads it; default 10), ``..._CERTIFICATE``, ``..._CLIENT_CERTIFICATE`` and
``..._CLIENT_KEY``; ``..._PROTOCOL`` must be ``http/protobuf`` (wsops sends nothing else).
A request that fails with 429, 502, 503 or 504 or a connection error is retried with backoff
within the timeout; any other failure raises.
"""

from __future__ import annotations

import gzip
import http.client
import ssl
import time
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

RETRYABLE = frozenset({429, 502, 503, 504})
PROTOCOLS = ("http/protobuf", "")
COMPRESSIONS = ("gzip", "deflate", "none", "")


def _get(env: Mapping[str, str], name: str, default: str = "") -> str:
    """``OTEL_EXPORTER_OTLP_TRACES_<name>``, else ``OTEL_EXPORTER_OTLP_<name>``."""
    return (env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or
            env.get(f"OTEL_EXPORTER_OTLP_{name}") or default).strip()


def parse_headers(raw: str) -> dict[str, str]:
    """``k=v,k2=v2`` (W3C baggage-like, values URL-encoded) as a dict."""
    out: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"OTEL_EXPORTER_OTLP_HEADERS: {item.strip()!r} is not key=value")
        out[urllib.parse.unquote(key.strip()).lower()] = urllib.parse.unquote(value.strip())
    return out


@dataclass(frozen=True)
class OtlpConfig:
    endpoint: str
    headers: dict[str, str] = field(default_factory=dict)
    compression: str = ""
    timeout: float = 10.0
    certificate: str = ""
    client_certificate: str = ""
    client_key: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OtlpConfig | None:
        """The export configuration, or None when no endpoint is set."""
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        if not endpoint:
            base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
            if not base:
                return None
            endpoint = base.rstrip("/") + "/v1/traces"
        protocol = _get(env, "PROTOCOL").lower()
        if protocol not in PROTOCOLS:
            raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r}: wsops exports traces "
                             "over OTLP/HTTP only; set it to http/protobuf and point the "
                             "endpoint at the collector's HTTP port (4318 by default)")
        compression = _get(env, "COMPRESSION").lower()
        if compression not in COMPRESSIONS:
            raise ValueError(f"OTEL_EXPORTER_OTLP_COMPRESSION {compression!r}: one of gzip, "
                             "deflate, none")
        raw_timeout = _get(env, "TIMEOUT", "10")
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ValueError(f"OTEL_EXPORTER_OTLP_TIMEOUT must be a number of seconds, not "
                             f"{raw_timeout!r}") from None
        if timeout <= 0:
            raise ValueError("OTEL_EXPORTER_OTLP_TIMEOUT must be positive")
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"OTLP traces endpoint {endpoint!r} is not an http(s) URL")
        return cls(endpoint, parse_headers(_get(env, "HEADERS")),
                   "" if compression == "none" else compression, timeout,
                   _get(env, "CERTIFICATE"), _get(env, "CLIENT_CERTIFICATE"),
                   _get(env, "CLIENT_KEY"))


class ExportError(Exception):
    """A request the collector refused or that could not be delivered in time."""


class OtlpHttp:
    """Posts encoded ``ExportTraceServiceRequest`` bodies over one kept-alive connection."""

    def __init__(self, config: OtlpConfig,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        url = urllib.parse.urlsplit(config.endpoint)
        self._https = url.scheme == "https"
        self._host, self._port = url.hostname or "", url.port
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._headers = {"Content-Type": "application/x-protobuf",
                         "User-Agent": "wsops-otlp", **config.headers}
        if config.compression:
            self._headers["Content-Encoding"] = config.compression
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            self._ssl = ssl.create_default_context(cafile=config.certificate or None)
            if config.client_certificate:
                self._ssl.load_cert_chain(config.client_certificate, config.client_key or None)
        self._conn: http.client.HTTPConnection | None = None
        self._sleep = sleep

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            timeout = self.config.timeout
            self._conn = (http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                                      context=self._ssl)
                          if self._https else
                          http.client.HTTPConnection(self._host, self._port, timeout=timeout))
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __call__(self, body: bytes) -> None:
        if self.config.compression == "gzip":
            body = gzip.compress(body, 6)
        elif self.config.compression == "deflate":
            body = zlib.compress(body)
        deadline = time.monotonic() + self.config.timeout
        delay = 0.5
        while True:
            try:
                conn = self._connection()
                conn.request("POST", self._path, body, self._headers)
                resp = conn.getresponse()
                detail = resp.read(4096)
                if resp.will_close:
                    self._close()
                if 200 <= resp.status < 300:
                    return
                error = f"HTTP {resp.status} from {self.config.endpoint}: {detail[:200]!r}"
                if resp.status not in RETRYABLE:
                    raise ExportError(error)
            except (OSError, http.client.HTTPException) as exc:
                self._close()
                error = f"{self.config.endpoint}: {exc or type(exc).__name__}"
            if time.monotonic() + delay > deadline:
                raise ExportError(error)
            self._sleep(delay)
            delay *= 2
