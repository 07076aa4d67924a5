"""``wsops loadtest``: a bounded WebSocket load generator for loopback targets (see ``cli``)."""
