"""Generated monitoring: Grafana dashboards, alert rules and their runbooks, from one source.
Pure builders; may import nothing else of wsops.
"""
