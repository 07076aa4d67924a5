"""The node runtime: run a node process (lifecycle), supervise ``--workers N`` worker processes
(supervisor, worker) and start a private redis-server for them (localredis).

May import the server, the admin listener (the workers' aggregator) and the config; never the
CLI, which calls it.
"""
