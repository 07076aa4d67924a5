"""W3C Trace Context values both sides check: the ``tracestate`` wsops carries beside a
``traceparent`` (in publish frames, server API calls, the Publisher and message envelopes).
Pure."""

from __future__ import annotations

import re
from typing import Final

# W3C Trace Context's tracestate: up to 32 comma-separated ``key=value`` members (optional
# spaces around commas), a key of lowercase letters, digits and ``_-*/`` (``tenant@system`` for
# multi-tenant vendors), a value of printable ASCII other than ``,`` and ``=``; 512 characters
# at most (the length a vendor must propagate).
_TS_KEY = r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
_TS_MEMBER = _TS_KEY + r"=[ !-+\--<>-~]{0,255}[!-+\--<>-~]"
TRACESTATE_RE: Final = re.compile(rf"{_TS_MEMBER}(?:[ \t]*,[ \t]*{_TS_MEMBER}){{0,31}}")
MAX_TRACESTATE: Final = 512
TRACESTATE_RULE: Final = "a W3C tracestate: up to 32 key=value members, 512 characters at most"


def valid_tracestate(value: object) -> bool:
    """Whether ``value`` is a W3C tracestate header value wsops carries (``TRACESTATE_RULE``)."""
    return isinstance(value, str) and len(value) <= MAX_TRACESTATE and \
        TRACESTATE_RE.fullmatch(value) is not None
