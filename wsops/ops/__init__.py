"""The ``wsops`` CLI: one module per command group (serve, status/top, drain, leaks, loadtest,
dashboards) and their pure views; ``wsops.cli`` joins them.

May import anything below it (the node runtime, the admin client and contract, the load
generator, observability); nothing imports it but ``wsops.cli``.
"""
