"""The in-memory broker: one process, for unit tests and `dev`; no client library.

It has no settings module: there is nothing to connect to, and its hub (`MemoryHub`) is the
whole broker state, shared by the connections of one process.
"""

from brokerline.memory.broker import MemoryBroker, MemoryHub

__all__ = ["MemoryBroker", "MemoryHub"]
