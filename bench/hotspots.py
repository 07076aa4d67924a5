"""Summarize py-spy collapsed stacks (``py-spy record --format raw``) by source line.

For each file given: the share of samples whose innermost frame is a line (self time), and, for
lines in files matching ``--focus`` (default: ``wsops/``), the share of samples with that line
anywhere on the stack (inclusive time: the line and everything it calls). py-spy's raw format
is one ``frame;frame;...;frame COUNT`` per line, each frame ``function (file:line)``.

Run: ``python bench/hotspots.py /tmp/prof/instrumented-echo-1.txt [--top 25 --focus wsops/]``
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME_RE = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(path: str) -> str:
    """``.../site-packages/aiohttp/web_ws.py`` -> ``aiohttp/web_ws.py``; repo paths from wsops/."""
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        i = path.rfind(marker)
        if i >= 0:
            return path[i + len(marker):]
    return path


def frame_key(frame: str) -> str:
    m = FRAME_RE.match(frame.strip())
    if m is None:
        return frame.strip()
    where = short(m["file"]) + (f":{m['line']}" if m["line"] else "")
    return f"{m['func']} ({where})"


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for raw in path.read_text(errors="replace").splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append(([frame_key(f) for f in stack.split(";")], int(count)))
    return stacks


def report(path: Path, top: int, focus: list[str]) -> str:
    stacks = load(path)
    total = sum(n for _, n in stacks)
    if not total:
        return f"{path}: no samples"
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, n in stacks:
        self_time[frames[-1]] += n
        for key in set(frames):
            if any(f in key for f in focus):
                inclusive[key] += n
    lines = [f"## {path.name}: {total} samples", "", "self time (innermost frame):"]
    lines += [f"  {n / total:6.1%}  {key}" for key, n in self_time.most_common(top)]
    lines += ["", f"inclusive time of lines in {', '.join(focus)}:"]
    lines += [f"  {n / total:6.1%}  {key}" for key, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--focus", nargs="+", default=["wsops/"])
    args = parser.parse_args()
    print("\n\n".join(report(p, args.top, args.focus) for p in args.files))


if __name__ == "__main__":
    main()
