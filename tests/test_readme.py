"""Every code block of README.md runs as written, or says why it cannot (issue #21).

Each fenced block is preceded by a directive, an HTML comment the rendered README hides:

- ``<!-- doctest: run -->``: a ``sh`` or ``python`` block run to completion (exit 0);
- ``<!-- doctest: with-server -->``: the same, while ``wsops serve --allow-anonymous`` runs on
  the README's ports (8765, admin 9765);
- ``<!-- doctest: serve URL -->``: a block that serves until stopped: started, ``URL`` must answer
  200, then it gets SIGINT and must stop cleanly; ``serve-each URL`` does so for every line;
- ``<!-- doctest: same-as PATH -->``: the block is the committed file ``PATH`` (type-checked or
  tested there), word for word;
- ``<!-- doctest: skip REASON -->``: not run, for the reason given (install commands CI itself
  runs, a fleet's addresses, output shown as text).

A block without a directive fails the test: a new example cannot slip in untested. Blocks run
in a temporary directory holding links to the checkout's ``.venv`` and ``examples``, with the
venv's ``bin`` first on ``PATH`` (the README's ``wsops ...`` lines assume an installed entry
point); the README's fixed ports (8765, 9765, 9090, 8080, 9800) are swapped for free ones.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
DIRECTIVE = re.compile(r"<!-- doctest: (\S+)(?: (.*?))? -->\s*\Z")
KINDS = {"run", "with-server", "serve", "serve-each", "same-as", "skip"}
PORTS = (8765, 9765, 9090, 8080, 9800)  # the README's fixed ports


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    body: str
    kind: str | None
    arg: str

    @property
    def name(self) -> str:
        return f"README.md:{self.line} {self.kind} {self.lang}".strip()


def blocks() -> list[Block]:
    text = README.read_text()
    out = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        d = DIRECTIVE.search(before)
        out.append(Block(text[:m.start()].count("\n") + 1, m.group(1), m.group(2),
                         d.group(1) if d else None, (d.group(2) or "") if d else ""))
    return out


BLOCKS = blocks()


def test_every_block_says_how_it_is_checked() -> None:
    assert len(BLOCKS) >= 15
    missing = [b.line for b in BLOCKS if b.kind not in KINDS]
    assert not missing, f"README blocks without a <!-- doctest: ... --> directive: {missing}"
    for b in BLOCKS:
        if b.kind == "skip":
            assert len(b.arg) > 10, f"README.md:{b.line}: say why it is skipped"
        if b.kind in ("run", "with-server", "serve", "serve-each"):
            assert b.lang in ("sh", "python"), f"README.md:{b.line}: run what? ({b.lang!r})"


def test_every_picture_is_in_the_tree_and_taken_by_a_test() -> None:
    """The README's screenshots are PNGs under docs/, each named by the test that takes it
    (``tests.support.reports.check_report`` writes it there with WSOPS_UPDATE_SCREENSHOTS=1)."""
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text())
    assert len(pictures) >= 4
    tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    for picture in pictures:
        path = ROOT / picture
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
        assert f'"{path.name}"' in tests, f"{picture}: no test takes it"


def ports_map() -> dict[int, int]:
    return {p: free_port() for p in PORTS}


def rewrite(text: str, ports: dict[int, int]) -> str:
    for old, new in ports.items():
        text = re.sub(rf"(?<![0-9]){old}(?![0-9])", str(new), text)
    return text


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / ".venv").symlink_to(VENV_BIN.parent)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "key.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return tmp_path


def env(ports: dict[int, int]) -> dict[str, str]:
    """The venv first on PATH; ``$SECRET`` set; ``wsops serve``'s default ports moved to free
    ones through its ``WSOPS_PORT``/``WSOPS_ADMIN_PORT`` variables (lines that name no port)."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "SECRET": "readme-doctest-secret-0123456789abcdef", "PYTHONUNBUFFERED": "1",
            "WSOPS_PORT": str(ports[8765]), "WSOPS_ADMIN_PORT": str(ports[9765])}


def command(block: Block, body: str, workdir: Path) -> list[str]:
    if block.lang == "python":
        script = workdir / f"block_{block.line}.py"
        script.write_text(body)
        return [sys.executable, str(script)]
    return ["bash", "-euo", "pipefail", "-c", body]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextmanager
def serving(argv: list[str], workdir: Path, url: str, what: str,
            ports: dict[int, int]) -> Iterator[None]:
    log = workdir / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=workdir, env=env(ports), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {url} never answered 200 (exit {proc.poll()}):\n"
                                     f"{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield
        assert proc.poll() is None, f"{what} died:\n{log.read_text()[-3000:]}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError(f"{what} did not stop on SIGINT") from None


def run_block(block: Block, body: str, workdir: Path, ports: dict[int, int]) -> None:
    done = subprocess.run(command(block, body, workdir), cwd=workdir, env=env(ports),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (f"{block.name} exited {done.returncode}:\n"
                                  f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


CHECKED = [b for b in BLOCKS if b.kind not in (None, "skip")]


@pytest.mark.parametrize("block", CHECKED, ids=[b.name for b in CHECKED])
def test_readme_block(block: Block, workdir: Path) -> None:
    if block.kind == "same-as":
        assert (ROOT / block.arg).read_text() == block.body, (
            f"{block.name} is not {block.arg} word for word")
        return
    ports = ports_map()
    body = rewrite(block.body, ports)
    if block.kind == "run":
        run_block(block, body, workdir, ports)
    elif block.kind == "with-server":
        server = [str(VENV_BIN / "wsops"), "serve", "--allow-anonymous", "--port",
                  str(ports[8765]), "--admin-port", str(ports[9765])]
        with serving(server, workdir, f"http://127.0.0.1:{ports[9765]}/readyz", "wsops serve",
                     ports):
            run_block(block, body, workdir, ports)
    elif block.kind == "serve":
        with serving(command(block, body, workdir), workdir, rewrite(block.arg, ports),
                     block.name, ports):
            pass
    elif block.kind == "serve-each":
        for line in body.splitlines():
            cmd = line.split("  #")[0].strip()
            if cmd:
                with serving(["bash", "-c", f"exec {cmd}"], workdir,
                             rewrite(block.arg, ports), cmd, ports):
                    pass
