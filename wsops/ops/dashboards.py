"""``wsops dashboards``: build Grafana dashboards, Prometheus alert rules and provisioning."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

# Defaults shown in --help, kept equal to wsops.observability.alerts' (a test checks): that
# module imports grafanalib, which `wsops` does not load at every start.
PLACEHOLDER = "https://wsops.example/runbooks/"
DEFAULT_GRAFANA = "http://localhost:3000"

dashboards_app = typer.Typer(help="Generate Grafana dashboards and alert rules for a wsops fleet.",
                             no_args_is_help=True)


_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def _rule_labels(items: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not (sep and _LABEL_KEY.fullmatch(key) and _LABEL_VALUE.fullmatch(value)
                and len(value) <= 63):
            raise typer.BadParameter(f"{item!r} is not a Kubernetes label KEY=VALUE",
                                     param_hint="--rule-label")
        out.append((key, value))
    return tuple(out)


@dashboards_app.command("build")
def build(
    out: Annotated[Path, typer.Option(help="Folder to write into.")] = Path("dashboards"),
    job_selector: Annotated[
        str, typer.Option(help="Prometheus selector of your wsops targets, used by the alerts.")
    ] = '{job="wsops"}',
    slo_seconds: Annotated[
        float, typer.Option(help="Delivery-latency SLO threshold (must match --slo-seconds of "
                                 "the nodes: the alert reads that histogram bucket).")
    ] = 0.010,
    runbook_base_url: Annotated[
        str | None, typer.Option(
            help="Absolute URL where runbooks/ is served; each alert's runbook_url is this plus "
                 "ALERT.md, e.g. https://git.example.com/ops/wsops/blob/main/runbooks/. "
                 "Default: REPOSITORY/blob/main/runbooks/ when the installed wsops declares its "
                 "repository URL (Repository or Source in pyproject's project.urls); without one, "
                 f"the placeholder {PLACEHOLDER} (and a warning): pass your own.",
            show_default=False)
    ] = None,
    grafana_base_url: Annotated[
        str, typer.Option(help="Absolute URL of your Grafana, the start of each alert's "
                               "dashboard_url. The default is Grafana's own default address, "
                               "as in the README's docker run.")
    ] = DEFAULT_GRAFANA,
    datasource_uid: Annotated[
        str, typer.Option(help="Prometheus datasource uid used by Grafana alert provisioning.")
    ] = "prometheus",
    cluster_label: Annotated[
        str, typer.Option(help="Label naming the cluster when one Prometheus holds several "
                               "(e.g. cluster): alerts keep it in every aggregation and link "
                               "with it, dashboards get a cluster variable. Empty: none.")
    ] = "",
    rule_label: Annotated[
        list[str] | None, typer.Option(
            help="KEY=VALUE label of the PrometheusRule, repeatable: what your Prometheus' "
                 "ruleSelector matches (kube-prometheus-stack: release=RELEASE).")
    ] = None,
    kubernetes: Annotated[
        Path | None, typer.Option(
            show_default=False,
            help="Also write the PrometheusRule (prometheusrule.yaml) and the dashboards "
                 "(dashboards/*.json) into this kustomize directory "
                 "(deploy/kubernetes/base), where kustomize may read them.")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Write nothing; exit 1 if OUT differs from a fresh build.")
    ] = False,
) -> None:
    """Write dashboards (JSON), the Prometheus rule file, its PrometheusRule manifest and Grafana
    provisioning into OUT.

    Example: wsops dashboards build --out dashboards --job-selector '{job="wsops"}'
    --runbook-base-url https://git.example.com/ops/wsops/blob/main/runbooks/
    --grafana-base-url https://grafana.example.com
    """
    if not (job_selector.startswith("{") and job_selector.endswith("}")):
        raise typer.BadParameter("must look like {job=\"wsops\"}", param_hint="--job-selector")
    if slo_seconds <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--slo-seconds")
    # Imported here: grafanalib is only needed by this command, not by every `wsops` start.
    from wsops.observability.alerts import (
        PLACEHOLDER_RUNBOOK_BASE_URL,
        AlertOptions,
        default_runbook_base_url,
        is_absolute_url,
    )
    from wsops.observability.build import build_all

    runbooks = runbook_base_url or default_runbook_base_url()
    for value, hint in ((runbooks, "--runbook-base-url"), (grafana_base_url, "--grafana-base-url")):
        if not is_absolute_url(value):
            raise typer.BadParameter(f"must be an absolute http(s) URL, not {value!r}",
                                     param_hint=hint)
    try:
        opts = AlertOptions(job_selector, slo_seconds, runbooks, grafana_base_url,
                            datasource_uid, cluster_label, _rule_labels(rule_label or []))
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--cluster-label") from e
    built = build_all(opts)
    files = {out / name: text for name, text in built.items()}
    if kubernetes is not None:
        files.update(kubernetes_files(kubernetes, built))
    changed = [path for path, text in files.items()
               if not path.is_file() or path.read_text() != text]
    if check:
        for path in changed:
            typer.echo(f"differs: {path}")
        raise typer.Exit(1 if changed else 0)
    if runbooks == PLACEHOLDER_RUNBOOK_BASE_URL:
        typer.echo(f"warning: runbook_url points at the placeholder {runbooks}: pass "
                   "--runbook-base-url (where your runbooks/ is served)", err=True)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    where = f"{out} and {kubernetes}" if kubernetes is not None else str(out)
    typer.echo(f"wrote {len(files)} files to {where} ({len(changed)} changed)")


def kubernetes_files(where: Path, built: dict[str, str]) -> dict[Path, str]:
    """What a kustomize base holds of a build: the PrometheusRule and the dashboards."""
    from wsops.observability.build import PROMETHEUS_RULE_FILE

    out = {where / "prometheusrule.yaml": built[PROMETHEUS_RULE_FILE]}
    for name, text in built.items():
        if name.endswith(".json") and "/" not in name:
            out[where / "dashboards" / name] = text
    return out
