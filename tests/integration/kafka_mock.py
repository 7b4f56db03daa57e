"""librdkafka's mock Kafka cluster, started in-process through ctypes.

The `confluent-kafka` wheel ships librdkafka, whose mock cluster is a real
Kafka-protocol server on 127.0.0.1 (an ephemeral port): produce, fetch,
consumer groups and offset commits work with any client, aiokafka included.
It keeps data in memory only, so it stands in for a broker that never crashes;
it does not implement CreateTopics, so topics are made with `create_topic`.

    with mock_kafka_cluster() as cluster:
        cluster.create_topic("orders", partitions=3)
        url = f"kafka://{cluster.bootstrap}/orders?group_id=g"

Used by the integration tests and the benchmarks.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

RD_KAFKA_PRODUCER = 0
_ERRSTR_SIZE = 512


class MockClusterError(RuntimeError):
    """librdkafka refused to start the mock cluster or create a topic."""


def librdkafka_path() -> str:
    """The `librdkafka*.so` bundled in the installed confluent-kafka wheel."""
    import confluent_kafka

    site = os.path.dirname(os.path.dirname(confluent_kafka.__file__))
    found = sorted(glob.glob(os.path.join(site, "confluent_kafka.libs", "librdkafka*.so*")))
    if not found:
        raise MockClusterError(f"no librdkafka*.so in {site}/confluent_kafka.libs (is confluent-kafka a wheel?)")
    return found[0]


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(librdkafka_path())
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_new.argtypes = []
    lib.rd_kafka_conf_set.restype = ctypes.c_int
    lib.rd_kafka_conf_set.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_destroy.restype = None
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_destroy.restype = None
    lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
    lib.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    lib.rd_kafka_mock_broker_set_down.restype = ctypes.c_int
    lib.rd_kafka_mock_broker_set_down.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.rd_kafka_mock_broker_set_up.restype = ctypes.c_int
    lib.rd_kafka_mock_broker_set_up.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.rd_kafka_mock_group_initial_rebalance_delay_ms.restype = None
    lib.rd_kafka_mock_group_initial_rebalance_delay_ms.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.rd_kafka_err2str.restype = ctypes.c_char_p
    lib.rd_kafka_err2str.argtypes = [ctypes.c_int]
    return lib


@dataclass
class MockKafkaCluster:
    """A running mock cluster: its bootstrap address and what it can be asked to do."""

    bootstrap: str
    brokers: int
    _lib: ctypes.CDLL = field(repr=False)
    _cluster: int = field(repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def create_topic(self, name: str, partitions: int = 1, replication: int = 1) -> None:
        """Create topic `name` (the mock cluster has no CreateTopics API)."""
        with self._lock:
            err = self._lib.rd_kafka_mock_topic_create(self._cluster, name.encode(), partitions, replication)
        if err:
            raise MockClusterError(f"cannot create topic {name!r}: {self._lib.rd_kafka_err2str(err).decode()}")

    def set_broker_down(self, broker_id: int = 1) -> None:
        """Drop the broker's connections and refuse new ones (its data stays)."""
        with self._lock:
            self._lib.rd_kafka_mock_broker_set_down(self._cluster, broker_id)

    def set_broker_up(self, broker_id: int = 1) -> None:
        """Accept connections again after `set_broker_down`."""
        with self._lock:
            self._lib.rd_kafka_mock_broker_set_up(self._cluster, broker_id)


@contextmanager
def mock_kafka_cluster(brokers: int = 1, rebalance_delay_ms: int = 0) -> Iterator[MockKafkaCluster]:
    """Start a mock cluster of `brokers` brokers on 127.0.0.1; destroyed on exit.

    Args:
        brokers: how many brokers the cluster has.
        rebalance_delay_ms: how long a new consumer group waits for more members
            before its first assignment (Kafka's `group.initial.rebalance.delay.ms`,
            3000 by default in Kafka and in the mock; 0 here so that tests start fast).
    """
    lib = _load()
    errstr = ctypes.create_string_buffer(_ERRSTR_SIZE)
    conf = lib.rd_kafka_conf_new()
    # The handle only hosts the cluster; keep its own logging quiet.
    lib.rd_kafka_conf_set(conf, b"log_level", b"3", errstr, _ERRSTR_SIZE)
    rk = lib.rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, _ERRSTR_SIZE)
    if not rk:
        raise MockClusterError(f"rd_kafka_new failed: {errstr.value.decode()}")
    cluster = lib.rd_kafka_mock_cluster_new(rk, brokers)
    if not cluster:
        lib.rd_kafka_destroy(rk)
        raise MockClusterError("rd_kafka_mock_cluster_new failed")
    try:
        lib.rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, rebalance_delay_ms)
        bootstrap = lib.rd_kafka_mock_cluster_bootstraps(cluster).decode()
        yield MockKafkaCluster(bootstrap=bootstrap, brokers=brokers, _lib=lib, _cluster=cluster)
    finally:
        lib.rd_kafka_mock_cluster_destroy(cluster)
        lib.rd_kafka_destroy(rk)


@contextmanager
def followers_sync_first(delay: float = 0.3) -> Iterator[None]:
    """Let aiokafka consumer groups of several members settle on the mock cluster.

    The mock answers a group's SyncGroup as soon as the leader's arrives (it
    carries every member's assignment) and then rejects a follower's later
    SyncGroup with INVALID_REQUEST, forgetting its assignment: a real broker
    keeps it. With aiokafka the leader, which is answered first, always syncs
    first, so a second member never gets partitions. Delaying the leader's
    SyncGroup (in every aiokafka consumer of this process) lets the followers
    sync first, which the mock handles.
    """
    import asyncio

    from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance

    original = CoordinatorGroupRebalance._on_join_leader

    async def on_join_leader(self: Any, response: Any) -> Any:
        await asyncio.sleep(delay)
        return await original(self, response)

    CoordinatorGroupRebalance._on_join_leader = on_join_leader
    try:
        yield
    finally:
        CoordinatorGroupRebalance._on_join_leader = original


if __name__ == "__main__":  # a manual check: python -m tests.integration.kafka_mock
    with mock_kafka_cluster() as c:
        c.create_topic("smoke", 2)
        print(c.bootstrap)
