"""The server API for backends: ``POST /api/<method>`` on a listener of its own
(``--api-port``), behind API keys (``keys``), with methods checked without I/O (``methods``)
and served against the node (``service``)."""
