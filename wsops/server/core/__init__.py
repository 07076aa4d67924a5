"""The bundled server's sans-I/O core: protocol, hub, sessions, history, presence, limits.

Nothing here imports the asyncio layer (``wsops.server``), metrics, HTTP or the client.
"""
