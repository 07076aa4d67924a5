"""Mutation testing of wsops' core modules: does the suite catch a wrong change?

Each mutant is one small change to one module (a flipped comparison, ``and``/``or`` swapped, an
integer constant +-1, a ``not`` dropped, a ``raise`` or a statement deleted, a ``return`` of
None, ``+``/``-`` swapped), run against that module's unit tests in a forked child that imports
the mutated source in place of the file (the file on disk is never touched). A mutant is killed
when the tests fail or time out; survivors are listed with their line. Equivalent mutants (no
test can tell them apart: the behaviour is the same) are listed with a reason in
``scripts/mutation_equivalents.txt`` and left out of the score.

    python scripts/mutation.py                    # every target module
    python scripts/mutation.py wsops/server/core/protocol.py
    python scripts/mutation.py --changed HEAD~1   # targets changed since a commit (CI)
    python scripts/mutation.py --min-score 95     # exit 1 below it

The score is killed / (mutants - equivalents). TESTING.md has the figures and the command.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.abc
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENTS = ROOT / "scripts" / "mutation_equivalents.txt"

# module -> the unit tests that must catch its mutants (fast tests, no live servers)
TARGETS: dict[str, list[str]] = {
    "wsops/server/core/protocol.py": ["tests/server/core/test_protocol.py"],
    "wsops/server/core/history.py": ["tests/server/core/test_history.py"],
    "wsops/server/core/presence.py": ["tests/server/core/test_presence.py"],
    "wsops/server/core/address_limit.py": ["tests/server/core/test_address_limit.py"],
    "wsops/server/core/token_bucket.py": ["tests/server/core/test_token_bucket.py"],
    "wsops/server/core/hub.py": ["tests/server/core/test_hub.py"],
    "wsops/server/core/session.py": ["tests/server/core/test_session.py"],
    "wsops/server/core/frames.py": ["tests/server/core/test_frames.py"],
    "wsops/server/core/heartbeat.py": ["tests/server/core/test_heartbeat.py"],
    "wsops/server/core/debugtargets.py": ["tests/server/core/test_debugtargets.py"],
    "wsops/server/core/flow.py": ["tests/server/core/test_flow.py"],
    "wsops/instrumentation/otlpwire.py": ["tests/instrumentation/test_otlpwire.py"],
    "wsops/backoff.py": ["tests/client/test_backoff.py"],
    "wsops/tracecontext.py": ["tests/server/core/test_protocol.py"],
    "wsops/client/tracker.py": ["tests/client/test_tracker.py"],
    "wsops/client/wire.py": ["tests/client/test_wire.py"],
    "wsops/server/broker/redis_url.py": ["tests/server/broker/test_redis_pure.py",
                                         "tests/server/broker/test_redis_cluster_pure.py"],
    "wsops/loadtest/timeline.py": ["tests/loadtest/test_timeline.py"],
    "wsops/server/eager.py": ["tests/server/test_eager.py"],
    "wsops/instrumentation/pycounts.py": ["tests/instrumentation/test_counts.py"],
}

_COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}


@dataclass(frozen=True)
class Mutant:
    module: str
    line: int
    key: str  # stable across unrelated edits: "function | what changed"
    source: str  # the whole mutated module

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.key}"


def _text(node: ast.AST) -> str:
    return " ".join(ast.unparse(node).split())[:90]


def _scopes(tree: ast.Module) -> dict[int, str]:
    """id(node) -> the qualified name of the function or class around it."""
    out: dict[int, str] = {}

    def walk(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = f"{scope}.{child.name}" if scope else child.name
            out[id(child)] = inner
            walk(child, inner)

    walk(tree, "")
    return out


def _other_python(test: ast.expr) -> bool | None:
    """For an ``if`` on ``sys.version_info``: whether it holds on this Python (None: another
    test)."""
    names = {n.attr for n in ast.walk(test) if isinstance(n, ast.Attribute)}
    if "version_info" not in names:
        return None
    return bool(eval(compile(ast.Expression(test), "<version test>", "eval"), {"sys": sys}))


def _skipped(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    """Docstrings, annotations, ``__slots__``/``__all__``, asserts (invariants for the type
    checker) and logging: not behaviour. And a ``sys.version_info`` test with the branch
    this Python does not take: its mutants cannot be run here."""
    seen: ast.AST | None = node
    while seen is not None:
        if isinstance(seen, ast.Assert):
            return True
        parent = parents.get(id(seen))
        if isinstance(parent, ast.If) and (holds := _other_python(parent.test)) is not None \
                and (seen is parent.test or (seen in parent.body) != holds):
            return True
        if isinstance(parent, ast.AnnAssign) and seen is parent.annotation:
            return True
        if isinstance(parent, ast.arg | ast.FunctionDef | ast.AsyncFunctionDef) and (
                seen is getattr(parent, "annotation", None)
                or seen is getattr(parent, "returns", None)):
            return True
        if isinstance(seen, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in ("__slots__", "__all__") for t in seen.targets):
            return True
        if isinstance(seen, ast.Expr) and isinstance(seen.value, ast.Call):
            func = seen.value.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and \
                    func.value.id in ("log", "logger", "logging"):
                return True
        seen = parent
    return False


def _is_docstring(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    parent = parents.get(id(node))
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)):
        return False
    return isinstance(parent, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)


def mutants(module: str) -> Iterator[Mutant]:
    """Every mutant of ``module`` (a path relative to the repository)."""
    source = (ROOT / module).read_text()
    tree = ast.parse(source)
    parents = {id(c): p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    scopes = _scopes(tree)
    nodes = [n for n in ast.walk(tree) if not _skipped(n, parents)]
    counts: dict[str, int] = {}

    order = {id(n): i for i, n in enumerate(ast.walk(tree))}

    def emit(node: ast.AST, what: str, change: Callable[[ast.AST, ast.Module], None]
             ) -> Iterator[Mutant]:
        """Apply ``change`` to the twin of ``node`` in a deep copy of the tree."""
        clone = copy.deepcopy(tree)
        twin = list(ast.walk(clone))[order[id(node)]]
        change(twin, clone)
        ast.fix_missing_locations(clone)
        key = f"{scopes.get(id(node), '') or '<module>'} | {what}"
        n = counts[key] = counts.get(key, 0) + 1
        if n > 1:
            key += f" #{n}"
        yield Mutant(module, getattr(node, "lineno", 0), key, ast.unparse(clone))

    for node in nodes:
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                swap = _COMPARE_SWAPS.get(type(op))
                if swap is None:
                    continue

                def flip(n: Any, _: ast.Module, i: int = i, swap: type[ast.cmpop] = swap) -> None:
                    n.ops[i] = swap()

                yield from emit(node, f"{type(op).__name__}->{swap.__name__} in "
                                      f"`{_text(node)}`", flip)
        elif isinstance(node, ast.BoolOp):
            other = ast.Or if isinstance(node.op, ast.And) else ast.And

            def swap_bool(n: Any, _: ast.Module, other: type[ast.boolop] = other) -> None:
                n.op = other()

            yield from emit(node, f"and/or in `{_text(node)}`", swap_bool)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            def drop_not(n: Any, clone: ast.Module) -> None:
                replace(clone, n, n.operand)

            yield from emit(node, f"drop not in `{_text(node)}`", drop_not)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            if _is_str_concat(node):
                continue
            other_op = ast.Sub if isinstance(node.op, ast.Add) else ast.Add

            def swap_arith(n: Any, _: ast.Module, other_op: type[ast.operator] = other_op
                           ) -> None:
                n.op = other_op()

            yield from emit(node, f"+/- in `{_text(node)}`", swap_arith)
        elif isinstance(node, ast.Constant) and type(node.value) is int \
                and not _is_docstring(node, parents):
            for delta in (1, -1):
                def bump(n: Any, _: ast.Module, delta: int = delta) -> None:
                    n.value = n.value + delta

                yield from emit(node, f"{node.value}{delta:+d} in "
                                      f"`{_text(parents.get(id(node), node))}`", bump)
        elif isinstance(node, ast.Raise):
            yield from emit(node, f"delete `{_text(node)}`",
                            lambda n, clone: replace(clone, n, ast.Pass()))
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) and \
                type(node.value.value) is bool:
            def flip_bool(n: Any, _: ast.Module) -> None:
                n.value = ast.Constant(not n.value.value)

            yield from emit(node, f"flip `{_text(node)}`", flip_bool)
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            def to_none(n: Any, _: ast.Module) -> None:
                n.value = ast.Constant(None)

            yield from emit(node, f"return None for `{_text(node)}`", to_none)
        elif isinstance(node, ast.Expr | ast.Assign | ast.AugAssign | ast.Delete) and \
                not _is_docstring(node, parents) and isinstance(
                    parents.get(id(node)), ast.FunctionDef | ast.AsyncFunctionDef | ast.If |
                    ast.For | ast.While | ast.With | ast.Try):
            yield from emit(node, f"delete `{_text(node)}`",
                            lambda n, clone: replace(clone, n, ast.Pass()))


def _is_str_concat(node: ast.BinOp) -> bool:
    return any((isinstance(side, ast.Constant) and isinstance(side.value, str | bytes))
               or isinstance(side, ast.JoinedStr) for side in (node.left, node.right))


def replace(tree: ast.Module, node: ast.AST, replacement: ast.AST) -> None:
    """Put ``replacement`` where ``node`` is in ``tree``."""
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is node:
                setattr(parent, field, replacement)
                return
            if isinstance(value, list) and any(v is node for v in value):
                value[next(i for i, v in enumerate(value) if v is node)] = replacement
                return
    raise LookupError("node not in tree")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves one module's source from memory."""

    def __init__(self, name: str, source: str) -> None:
        self.name, self.source = name, source

    def find_spec(self, fullname: str, path: object, target: object = None) -> object:
        if fullname != self.name:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=f"<mutant of {fullname}>")

    def create_module(self, spec: object) -> None:
        return None

    def exec_module(self, module: object) -> None:
        exec(compile(self.source, f"<mutant {self.name}>", "exec"),
             module.__dict__)  # type: ignore[attr-defined]


def _module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def run_tests(tests: list[str], mutant: Mutant | None, timeout: float) -> str:
    """``killed``, ``survived`` or ``timeout``, from a forked child running pytest."""
    pid = os.fork()
    if pid == 0:  # the child: serve the mutant, run the tests quietly, exit with pytest's code
        try:
            if mutant is not None:
                sys.meta_path.insert(0, _Finder(_module_name(mutant.module), mutant.source))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import pytest

            code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                                "--hypothesis-seed=0", *tests])
            os._exit(int(code))
        except BaseException:
            os._exit(99)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "survived" if os.waitstatus_to_exitcode(status) == 0 else "killed"
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.01)


def load_equivalents() -> dict[str, str]:
    """``key -> reason`` from scripts/mutation_equivalents.txt (``module: key  # reason``)."""
    out: dict[str, str] = {}
    if EQUIVALENTS.exists():
        for line in EQUIVALENTS.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                entry, _, reason = line.partition("  # ")
                out[entry.strip()] = reason.strip()
    return out


def changed_targets(since: str) -> list[str]:
    """Target modules changed since ``since``, or whose tests changed (a weaker test lowers
    the score as surely as new code); every target when git cannot tell."""
    paths = {*TARGETS, *(t for tests in TARGETS.values() for t in tests)}
    out = subprocess.run(["git", "diff", "--name-only", since, "--", *sorted(paths)],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        print(f"mutation: cannot diff against {since} ({out.stderr.strip()}): every target",
              file=sys.stderr)
        return list(TARGETS)
    changed = set(out.stdout.split())
    return [m for m, tests in TARGETS.items() if m in changed or changed & set(tests)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"default: all of {', '.join(TARGETS)}")
    parser.add_argument("--changed", metavar="REF",
                        help="only target modules changed since REF (git diff)")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="exit 1 when a module scores below this percentage")
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="stop starting mutants after this long (0: no limit)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    args = parser.parse_args()
    modules = args.modules or (changed_targets(args.changed) if args.changed else list(TARGETS))
    unknown = [m for m in modules if m not in TARGETS]
    if unknown:
        parser.error(f"not a target module: {', '.join(unknown)}")
    if not modules:
        print("mutation: no target module changed")
        return 0
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    # Import what the tests import, once, so each forked child starts warm; never the target
    # modules themselves (the child must import the mutant).
    import aiohttp  # noqa: F401
    import hypothesis  # noqa: F401
    import pytest  # noqa: F401

    equivalents = load_equivalents()
    started = time.monotonic()
    worst = 100.0
    for module in modules:
        found = list(mutants(module))
        if args.list:
            for m in found:
                print(m)
            continue
        tests = TARGETS[module]
        t0 = time.monotonic()
        if run_tests(tests, None, 300) != "survived":
            print(f"{module}: its tests fail without any mutant: fix them first")
            return 2
        timeout = max(10.0, 5 * (time.monotonic() - t0))
        killed, survivors, equivalent, skipped = 0, [], [], 0
        for i, m in enumerate(found, 1):
            if f"{m.module}: {m.key}" in equivalents:
                equivalent.append(m)
                continue
            if args.max_seconds and time.monotonic() - started > args.max_seconds:
                skipped += 1
                continue
            verdict = run_tests(tests, m, timeout)
            if verdict == "survived":
                survivors.append(m)
            else:
                killed += 1
            if sys.stderr.isatty():  # a live counter; a log gets a line every 50
                print(f"\r{module}: {i}/{len(found)} mutants, {len(survivors)} survived",
                      end="", flush=True, file=sys.stderr)
            elif i % 50 == 0:
                print(f"{module}: {i}/{len(found)} mutants", file=sys.stderr, flush=True)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        scored = killed + len(survivors)
        score = 100.0 * killed / scored if scored else 100.0
        worst = min(worst, score)
        print(f"{module}: {len(found)} mutants, {len(equivalent)} equivalent, {killed} killed, "
              f"{len(survivors)} survived" + (f", {skipped} not run (time)" if skipped else "")
              + f": score {score:.1f}%")
        for m in survivors:
            print(f"  SURVIVED {m}")
    if args.list:
        return 0
    stale = [k for k in equivalents if k.split(": ", 1)[0] in modules and not any(
        k == f"{m.module}: {m.key}" for module in modules for m in mutants(module))]
    for k in stale:
        print(f"  (equivalent no longer generated: {k})")
    print(f"mutation: {time.monotonic() - started:.0f} s")
    return 1 if worst < args.min_score else 0


if __name__ == "__main__":
    sys.exit(main())
