"""Brokers: the implementations of the core's broker port (``wsops.server.core.broker``) that
connect a node's hub to rooms' history, presence and other nodes: ``memory`` (embedded) and
``redis`` (a fleet). May import the core and the shared helpers; nothing above the server.
"""

from __future__ import annotations

from wsops.server.broker.memory import MemoryBroker
from wsops.server.core.broker import Broker, BrokerListener, Published, Recovery

__all__ = ["Broker", "BrokerListener", "MemoryBroker", "Published", "Recovery"]
