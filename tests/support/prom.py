"""A real Prometheus for tests: temp dir, free port, generated scrape config, HTTP API."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.ports import free_port
from tests.support.waits import until

PROMETHEUS = shutil.which("prometheus")


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    async def api(self, path: str, **params: str) -> Any:
        async with aiohttp.ClientSession() as s, s.get(f"{self.url}/api/v1/{path}",
                                                       params=params) as r:
            body = await r.json()
        return body

    async def query(self, expr: str) -> Any:
        return await self.api("query", query=expr)

    async def metric_names(self) -> set[str]:
        return set((await self.api("label/__name__/values"))["data"])


@contextlib.asynccontextmanager
async def prometheus(tmp: Path, targets: list[str], rule_files: list[Path] | None = None,
                     job: str = "wsops") -> AsyncIterator[Prometheus]:
    assert PROMETHEUS is not None, "prometheus missing (apt-get install prometheus)"
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files or []],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
    }
    cfg = tmp / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config))
    log = (tmp / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:

            async def ready() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError((tmp / "prometheus.log").read_text())
                try:
                    async with s.get(url + "/-/ready") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await until(ready, 20.0, step=0.1, what=f"prometheus ready at {url}")
        yield Prometheus(url)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


PROMTOOL = shutil.which("promtool")


def promtool_check_metrics(exposition: str) -> str:
    """What ``promtool check metrics`` (Prometheus' own linter: naming, units, HELP, types)
    says of ``exposition``: empty when it has nothing to say."""
    if PROMTOOL is None:
        raise AssertionError("promtool missing: apt-get install prometheus (scripts/test.sh)")
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=exposition.encode(),
                          capture_output=True, timeout=30, check=False)
    return (done.stdout + done.stderr).decode().strip()


def promtool_check_rules(path: Path) -> str:
    """``promtool check rules`` of a rule file: empty when it passes, else what it said."""
    if PROMTOOL is None:
        raise AssertionError("promtool missing: apt-get install prometheus (scripts/test.sh)")
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                          timeout=30, check=False)
    return "" if done.returncode == 0 else (done.stdout + done.stderr).decode().strip()
