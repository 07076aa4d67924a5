"""deploy/kubernetes: it renders with kustomize, every rendered object is valid for
Kubernetes (strict schemas, offline), and what it says of wsops (probe paths, ports, the
preStop drain, flags, variables, generated rules and dashboards) is what wsops does."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from typer.testing import CliRunner

from tests.support.prom import promtool_check_rules
from wsops.cli import app
from wsops.config import Settings, knobs
from wsops.observability.alerts import AlertOptions
from wsops.observability.build import build_all
from wsops.ops.dashboards import kubernetes_files

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.32"
CRD_CHECK = Path(__file__).resolve().parent / "crd"  # npm ci --prefix it (scripts/test.sh)
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule")}


def render(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise AssertionError("kubectl missing: it renders kustomize (scripts/test.sh)")
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


@pytest.mark.parametrize("where", ["", "overlays/redis"])
def test_every_rendered_object_is_valid_kubernetes(where: str) -> None:
    docs = render(DEPLOY / where)
    kinds = sorted(d["kind"] for d in docs)
    assert {"Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor",
            "PrometheusRule", "ConfigMap"} <= set(kinds)
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue  # the monitoring CRDs: their own schemas, below
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    monitoring = [d for d in docs if (d["apiVersion"], d["kind"]) in CRDS]
    assert len(monitoring) == 2
    assert crd_errors(monitoring) == {}


def crd_errors(docs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """What the prometheus-operator CRD schemas (published in
    @kubernetes-models/prometheus-operator, run by node) say of ``docs``, by kind/name."""
    node = shutil.which("node")
    if node is None or not (CRD_CHECK / "node_modules").is_dir():
        raise AssertionError("node and `npm ci --prefix tests/deploy/crd` are needed to check "
                             "the monitoring objects against their CRD schemas "
                             "(scripts/test.sh runs it)")
    out = subprocess.run([node, str(CRD_CHECK / "validate.mjs")], input=json.dumps(docs),
                         capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode in (0, 1), out.stdout + out.stderr
    seen = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(seen) == len(docs), out.stdout + out.stderr
    return {f"{s['kind']}/{s['name']}": s["errors"] for s in seen if s["errors"]}


def test_a_broken_manifest_is_refused_by_the_validation() -> None:
    deployment = by_kind(render(DEPLOY), "Deployment", "wsops")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"][
        "prot"] = "admin"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    docs = render(DEPLOY)
    monitor = by_kind(docs, "ServiceMonitor", "wsops")
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    rule = by_kind(docs, "PrometheusRule", "wsops-alerts")
    rule["spec"]["groups"][0]["rules"][0].pop("expr")
    errors = crd_errors([monitor, rule])
    assert errors == {
        "ServiceMonitor/wsops": ["/spec/endpoints/0/interval must match pattern "
                                 '"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?'
                                 '(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"'],
        "PrometheusRule/wsops-alerts": ["/spec/groups/0/rules/0 must have required property "
                                        "expr"]}, errors


def test_probes_ports_flags_and_the_prestop_drain_are_wsops_own() -> None:
    docs = render(DEPLOY)
    pod = by_kind(docs, "Deployment", "wsops")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "serve"
    flags = dict(a.removeprefix("--").split("=", 1) for a in args[1:])
    known = {k.flag.removeprefix("--") for k in knobs()}
    assert set(flags) <= known, set(flags) - known
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"ws": int(flags["port"]), "admin": int(flags["admin-port"])}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    env = {e["name"] for e in container["env"]}
    assert env <= {k.env for k in knobs()} | {"WSOPS_ADMIN_TOKEN"}, env
    # The settings as `wsops serve` reads them from those flags (and a secret) are valid.
    result = CliRunner().invoke(app, [*args, "--check-config"], env={
        "WSOPS_JWT_SECRET": "s", "WSOPS_ADMIN_TOKEN": "t"})
    assert result.exit_code == 0, result.output
    # preStop drains this very node through its admin port, within the grace period.
    drain = container["lifecycle"]["preStop"]["exec"]["command"]
    assert drain[:3] == ["wsops", "drain", f"http://127.0.0.1:{flags['admin-port']}"]
    deadline = float(drain[drain.index("--deadline") + 1])
    assert deadline == float(flags["drain-deadline"])
    assert pod["terminationGracePeriodSeconds"] > deadline
    assert CliRunner().invoke(app, [*drain[1:], "--help"]).exit_code == 0
    # Non-root, read-only, no privilege; what wsops writes goes to /tmp.
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
    service = by_kind(docs, "Service", "wsops")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    selector = by_kind(docs, "Deployment", "wsops")["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector


def test_the_service_monitor_scrapes_the_metrics_as_the_alerts_expect() -> None:
    docs = render(DEPLOY)
    monitor = by_kind(docs, "ServiceMonitor", "wsops")["spec"]
    service = by_kind(docs, "Service", "wsops")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    job = next(r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job")
    assert AlertOptions().job_selector == f'{{job="{job}"}}'


def test_the_prometheus_rule_and_dashboards_are_a_fresh_build_and_load(tmp_path: Path) -> None:
    base = DEPLOY / "base"
    expected = kubernetes_files(base, build_all(AlertOptions()))
    stale = [str(p) for p, text in expected.items() if not p.is_file() or p.read_text() != text]
    assert not stale, ("run `wsops dashboards build --kubernetes deploy/kubernetes/base`: "
                       f"stale {stale}")
    rule = by_kind(render(DEPLOY), "PrometheusRule", "wsops-alerts")
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    assert promtool_check_rules(rules) == ""
    dashboards = by_kind(render(DEPLOY), "ConfigMap", "wsops-dashboards")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert set(dashboards["data"]) == {p.name for p in expected if p.suffix == ".json"}


def test_the_redis_overlay_runs_three_nodes_on_one_redis() -> None:
    docs = render(DEPLOY / "overlays" / "redis")
    wsops = by_kind(docs, "Deployment", "wsops")
    assert wsops["spec"]["replicas"] == 3
    env = {e["name"]: e.get("value") for e in
           wsops["spec"]["template"]["spec"]["containers"][0]["env"]}
    redis = by_kind(docs, "Service", "wsops-redis")
    assert env["WSOPS_BROKER"] == f"redis://wsops-redis:{redis['spec']['ports'][0]['port']}/0"
    Settings(broker=env["WSOPS_BROKER"], allow_anonymous=True)  # a broker wsops accepts


def test_dashboards_build_writes_the_kustomize_files_and_checks_them(tmp_path: Path) -> None:
    out, kube = tmp_path / "dashboards", tmp_path / "kube"
    runner = CliRunner()
    wrote = runner.invoke(app, ["dashboards", "build", "--out", str(out), "--kubernetes",
                                str(kube)])
    assert wrote.exit_code == 0, wrote.output
    assert (kube / "prometheusrule.yaml").read_text() == \
        (out / "wsops-prometheusrule.yaml").read_text()
    assert sorted(p.name for p in (kube / "dashboards").iterdir()) == [
        "wsops-fleet.json", "wsops-memory.json", "wsops-node.json"]
    check = ["dashboards", "build", "--out", str(out), "--kubernetes", str(kube), "--check"]
    assert runner.invoke(app, check).exit_code == 0
    (kube / "dashboards" / "wsops-node.json").write_text("{}")
    stale = runner.invoke(app, check)
    assert stale.exit_code == 1 and "wsops-node.json" in stale.output


def test_the_dockerfile_installs_the_project_and_runs_wsops_as_non_root() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0].startswith("FROM python:3.11-slim")
    user = next(line for line in instructions if line.startswith("USER "))
    assert not user.split()[1].startswith(("0", "root"))
    # A wheel of this tree, built where a compiler is and installed with its C module.
    assert any(line.startswith("RUN pip wheel --no-deps --wheel-dir /wheels .")
               for line in instructions)
    assert any(line.startswith("COPY --from=build /wheels") for line in instructions)
    assert "pycounts.COMPILED" in (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["wsops"]' in instructions
    assert "EXPOSE 8765 9765" in instructions  # the defaults of --port and --admin-port
    defaults = Settings()
    assert (defaults.port, defaults.admin_port) == (8765, 9765)
    text = (ROOT / "Dockerfile").read_text()
    assert "http://127.0.0.1:9765/healthz" in text
    cmd = [line for line in instructions if line.startswith("CMD [")][-1]  # not HEALTHCHECK's
    args = yaml.safe_load(cmd.removeprefix("CMD "))
    result = CliRunner().invoke(app, [*args, "--check-config", "--allow-anonymous"])
    assert result.exit_code == 0, result.output
    assert ".venv" in (ROOT / ".dockerignore").read_text()
