"""``wsops dashboards``: build Grafana dashboards, Prometheus alert rules and provisioning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

dashboards_app = typer.Typer(help="Generate Grafana dashboards and alert rules for a wsops fleet.",
                             no_args_is_help=True)


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
        str, typer.Option(help="Prefix of runbook_url annotations (where runbooks/ is served).")
    ] = "runbooks/",
    grafana_base_url: Annotated[
        str, typer.Option(help="Prefix of dashboard_url annotations, e.g. https://grafana.example")
    ] = "",
    datasource_uid: Annotated[
        str, typer.Option(help="Prometheus datasource uid used by Grafana alert provisioning.")
    ] = "prometheus",
    check: Annotated[
        bool, typer.Option(help="Write nothing; exit 1 if OUT differs from a fresh build.")
    ] = False,
) -> None:
    """Write dashboards (JSON), the Prometheus rule file and Grafana provisioning into OUT.

    Example: wsops dashboards build --out dashboards --job-selector '{job="wsops"}'
    """
    if not (job_selector.startswith("{") and job_selector.endswith("}")):
        raise typer.BadParameter("must look like {job=\"wsops\"}", param_hint="--job-selector")
    if slo_seconds <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--slo-seconds")
    # Imported here: grafanalib is only needed by this command, not by every `wsops` start.
    from wsops.observability.alerts import AlertOptions
    from wsops.observability.build import build_all

    opts = AlertOptions(job_selector, slo_seconds, runbook_base_url, grafana_base_url,
                        datasource_uid)
    files = build_all(opts)
    changed = [name for name, text in files.items()
               if not (out / name).is_file() or (out / name).read_text() != text]
    if check:
        for name in changed:
            typer.echo(f"differs: {out / name}")
        raise typer.Exit(1 if changed else 0)
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    typer.echo(f"wrote {len(files)} files to {out} ({len(changed)} changed)")
