"""Generated monitoring: Grafana dashboards, alert rules and their runbooks, from one source."""
