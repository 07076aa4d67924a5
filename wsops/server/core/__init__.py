"""The bundled server's sans-I/O core: protocol, frames, hub, sessions, heartbeat, history,
presence, limits.

Nothing here imports the asyncio layer (``wsops.server``), metrics, HTTP or the client (the
frame reader borrows one pure function of aiohttp's, its C unmasking, when it imports).
"""
