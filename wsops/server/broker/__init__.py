"""Brokers connect a node's hub to the rooms' history, presence and other nodes."""

from __future__ import annotations

from wsops.server.broker.base import Broker, BrokerListener, Published, Recovery
from wsops.server.broker.memory import MemoryBroker

__all__ = ["Broker", "BrokerListener", "MemoryBroker", "Published", "Recovery"]
