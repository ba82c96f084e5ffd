"""How a producer picks the partition of a partitioned topic: `PulsarSettings.partition_routing`
and `partition_key_hashing`.

pulsar-client (the C++ client under the Python binding) routes a message with a key to
`hash(key) % partitions` in both of its modes; the mode only decides where a message without
a key goes: `round_robin` (the next partition, switching per batch) or `single_partition` (one
partition picked at random when the producer is created). Its hash is `boost::hash` of the key
(the `BoostHash` scheme, which the binding does not let us change): it differs from the Java
client's default (`JavaStringHash`) and is not promised to stay the same across Boost versions.
`java_string` and `murmur3_32` route by the Java client's two schemes instead, computed here by
a custom router, so that producers written in Java and in Python send a key to the same
partition, whatever the client versions.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pulsar

ROUTING_MODES: dict[str, pulsar.PartitionsRoutingMode] = {
    "round_robin": pulsar.PartitionsRoutingMode.RoundRobinDistribution,
    "single_partition": pulsar.PartitionsRoutingMode.UseSinglePartition,
}
KEY_HASHINGS = ("client", "java_string", "murmur3_32")

INT32_MAX = 0x7FFFFFFF
MASK32 = 0xFFFFFFFF

Router = Callable[[pulsar.Message, int], int]


def java_string_hash(key: str) -> int:
    """Java's `String.hashCode()` (over UTF-16 code units), made non-negative as Pulsar does."""
    units = key.encode("utf-16-be")
    value = 0
    for index in range(0, len(units), 2):
        value = (value * 31 + int.from_bytes(units[index:index + 2], "big")) & MASK32
    return value & INT32_MAX


def _rotl32(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & MASK32


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3's x86 32-bit hash of `data` (Austin Appleby's public-domain algorithm)."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    value = seed & MASK32
    whole = len(data) - len(data) % 4
    for index in range(0, whole, 4):
        block = int.from_bytes(data[index:index + 4], "little")
        block = (_rotl32((block * c1) & MASK32, 15) * c2) & MASK32
        value = (_rotl32(value ^ block, 13) * 5 + 0xE6546B64) & MASK32
    tail = int.from_bytes(data[whole:], "little")  # 0 when there is none: mixes in nothing
    value ^= (_rotl32((tail * c1) & MASK32, 15) * c2) & MASK32
    value ^= len(data)
    value ^= value >> 16
    value = (value * 0x85EBCA6B) & MASK32
    value ^= value >> 13
    value = (value * 0xC2B2AE35) & MASK32
    return value ^ (value >> 16)


def murmur3_32_hash(key: str) -> int:
    """The Java client's `Murmur3_32Hash` of a key: UTF-8 bytes, seed 0, made non-negative."""
    return murmur3_32(key.encode()) & INT32_MAX


HASHES: dict[str, Callable[[str], int]] = {
    "java_string": java_string_hash,
    "murmur3_32": murmur3_32_hash,
}


def key_router(hashing: str, routing: str) -> Router | None:
    """A custom router for `hashing`, or None to keep the client's own (`client`).

    Messages without a key follow `routing`: the next partition for each message (the
    client's own router switches per batch), or one partition picked at random for the
    producer's life.
    """
    if hashing == "client":
        return None
    make_hash = HASHES[hashing]
    turn = itertools.count()
    single = random.randrange(1 << 16)

    def route(message: pulsar.Message, partitions: int) -> int:
        key = message.partition_key()
        if key:
            return make_hash(key) % partitions
        if routing == "single_partition":
            return single % partitions
        return next(turn) % partitions

    return route
