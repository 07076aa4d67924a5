"""The load generator behind ``wsops loadtest`` (``wsops.ops.loadtest``): plans, the runner,
shard processes and raw loopback clients. May import the shared helpers only.
"""
