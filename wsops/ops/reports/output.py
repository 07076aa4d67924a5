"""What the commands with ``--report`` share: the option, the command line as the report shows
it (secrets hidden), the versions, and writing the file (checked before the work starts)."""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from wsops.version import __version__

ReportOption = Annotated[Path | None, typer.Option(
    "--report", metavar="FILE.html", show_default=False,
    help="Also write a self-contained HTML report here: charts and tables, no script and no "
         "network, to open in a browser or attach to a ticket.")]

HIDDEN = "***"
_SECRET_OPTION = re.compile(r"^--?[\w-]*(token|password|secret|key)[\w-]*$", re.IGNORECASE)
# (the password runs to the last "@" before the path: "p@ss" is one)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^/\s]*@",
                           re.IGNORECASE)
_QUERY_SECRET = re.compile(r"(?P<name>[?&][\w-]*(?:token|password|secret|key)[\w-]*=)[^&#\s]*",
                           re.IGNORECASE)


def command_line(argv: Sequence[str] | None = None) -> str:
    """``wsops ARGS`` as typed, with the values of token/password/secret options and the
    passwords in URLs replaced by ``***`` (a report gets attached to tickets)."""
    args = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append(HIDDEN)
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if _SECRET_OPTION.match(name):
            if eq:
                out.append(f"{name}={HIDDEN}")
            else:
                out.append(arg)
                hide_next = True
            continue
        arg = _URL_PASSWORD.sub(rf"\g<scheme>\g<user>:{HIDDEN}@", arg)
        out.append(_QUERY_SECRET.sub(rf"\g<name>{HIDDEN}", arg))
    return shlex.join(["wsops", *out])


def versions(**more: Any) -> dict[str, Any]:
    """wsops's and Python's versions (and ``more``, e.g. the server's)."""
    return {"wsops": __version__, "python": platform.python_version(), **more}


def check_path(path: Path | None) -> None:
    """Refuse, before any work, a report that could not be written at the end."""
    if path is None:
        return
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a directory", param_hint="--report")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise typer.BadParameter(f"{parent} does not exist", param_hint="--report")
    if not os.access(parent, os.W_OK):
        raise typer.BadParameter(f"{parent} is not writable", param_hint="--report")


def write(path: Path, html: str) -> None:
    """Write ``html`` to ``path`` whole or not at all (a temporary file renamed), and say so
    on stderr."""
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".",
                               prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    typer.echo(f"report: {path}", err=True)
