"""Kafka clients configured once from `KafkaOptions`, and the publisher every stage sends events with."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import RecordMetadata

from ragsync.errors import RunError
from ragsync.events import Event

# A consumer group's committed offset of a partition (None before its first commit), e.g. `consumer.committed`.
Committed = Callable[[TopicPartition], Awaitable[int | None]]


@dataclass(frozen=True, kw_only=True)
class KafkaOptions:
    """How every Kafka client of a process reaches the broker, logs in, and behaves in its group."""

    bootstrap_servers: str
    security_protocol: str
    ssl_cafile: Path | None
    ssl_certfile: Path | None
    ssl_keyfile: Path | None
    sasl_mechanism: str
    sasl_username: str | None
    sasl_password: str | None = field(repr=False)  # never in a log line or a traceback's locals
    enable_idempotence: bool
    session_timeout_ms: int
    heartbeat_interval_ms: int
    max_poll_interval_ms: int
    fetch_max_wait_ms: int
    partitions: int  # of each topic ragsync creates
    replication_factor: int


def tls_context(kafka: KafkaOptions) -> ssl.SSLContext | None:
    """The TLS context of KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL: the system's CAs, or KAFKA_SSL_CAFILE, and the
    client certificate when given; host names are checked. None for plaintext."""
    if not kafka.security_protocol.endswith("SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None,
        certfile=str(kafka.ssl_certfile) if kafka.ssl_certfile else None,
        keyfile=str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
    )
    return context


def security_options(kafka: KafkaOptions) -> dict[str, Any]:
    """The options that reach every aiokafka client: protocol, TLS context, SASL login."""
    options: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    context = tls_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL"):
        options |= {
            "sasl_mechanism": kafka.sasl_mechanism,
            "sasl_plain_username": kafka.sasl_username,
            "sasl_plain_password": kafka.sasl_password,
        }
    return options


def producer_options(kafka: KafkaOptions) -> dict[str, Any]:
    """Producer options shared by every component (idempotence is a setting: the local broker lacks it)."""
    return {
        **security_options(kafka),
        "acks": "all",
        "enable_idempotence": kafka.enable_idempotence,
        "linger_ms": 5,
        "max_request_size": 8 * 1024 * 1024,
    }


def make_consumer(
    kafka: KafkaOptions,
    *topics: str,
    group_id: str | None,
    fetch_max_wait_ms: int | None = None,
    fetch_max_mb: int = 16,
) -> AIOKafkaConsumer:
    """A consumer that never auto-commits: offsets are committed only after the work is done. Its fetches wait
    `fetch_max_wait_ms` at most (default: the `kafka_fetch_max_wait_ms` setting) and bring `fetch_max_mb` at most
    (half of it from one partition)."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        max_poll_interval_ms=kafka.max_poll_interval_ms,
        max_partition_fetch_bytes=fetch_max_mb * 1024 * 1024 // 2,
        fetch_max_bytes=fetch_max_mb * 1024 * 1024,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms if fetch_max_wait_ms is None else fetch_max_wait_ms,
        **security_options(kafka),
    )


async def start_client(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Start a consumer or producer. One that cannot reach the broker is closed before the error goes on, so that
    the person reads one error, not also a warning about an unclosed client."""
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise


class Publisher:
    """Sends events to topics. Sends are buffered; `flush` waits until the broker has every one."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._pending: list[asyncio.Future[Any]] = []

    @classmethod
    def to(cls, kafka: KafkaOptions) -> Publisher:
        """A publisher with its own producer; call `start` before use."""
        return cls(AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, **producer_options(kafka)))

    async def start(self) -> None:
        """Connect to the broker (closing the producer again when that fails)."""
        await start_client(self._producer)

    async def stop(self) -> None:
        """Flush and disconnect."""
        try:
            await self.flush()
        finally:
            await self._producer.stop()

    async def send(self, topic: str, key: str, event: Event) -> None:
        """Queue one event; errors surface at the next `flush`."""
        self._pending.append(await self._producer.send(topic, event.to_bytes(), key=key.encode()))

    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None = None
    ) -> asyncio.Future[RecordMetadata]:
        """Queue bytes already encoded (an item event, a replayed original message; None: a tombstone). Returns
        the delivery: where the broker put it, once acknowledged (several tasks may share this publisher, so a
        caller that needs its own offsets awaits these rather than `flush`)."""
        delivery: asyncio.Future[RecordMetadata] = await self._producer.send(topic, value, key=key, headers=headers)
        self._pending.append(delivery)
        return delivery

    async def flush(self) -> None:
        """Wait until every queued event is acknowledged; raises the first delivery error."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)


async def rewind_to_committed(consumer: AIOKafkaConsumer) -> None:
    """Go back to the group's committed offset of each assigned partition (the beginning where none is): a stage
    restarted after a crash is delivered again what it had fetched but not committed."""
    for tp in consumer.assignment():
        committed = await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)


async def assign_all(consumer: AIOKafkaConsumer, topic: str, from_beginning: bool = True) -> list[TopicPartition]:
    """Assign every partition of `topic` to a started consumer without a group, at its start or its end. A topic
    that does not exist yet (a fresh broker) has no partitions: nothing is assigned, and nothing is read."""
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(partitions)
    if not partitions:
        return partitions  # seeking nothing would fail; there is nothing to read
    if from_beginning:
        await consumer.seek_to_beginning()
    else:
        await consumer.seek_to_end()
    return partitions


async def fresh_partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int] | None:
    """The partitions of `topic` by a metadata request made now (None: no such topic). `partitions_for_topic`
    answers from the consumer's cache, which can hold a deleted topic for minutes, and aiokafka's public
    `topics()` gives names only, so this asks its client directly."""
    cluster = await consumer._client.fetch_all_metadata()
    partitions = cluster.partitions_for_topic(topic)
    return None if partitions is None else set(partitions)


async def assign_every_partition(consumers: list[AIOKafkaConsumer], topic: str) -> None:
    """Share every partition of `topic` among started `consumers`, round robin, without a group join (for a process
    that is its broker's only client). Each reads from its group's committed offset, else from the beginning."""
    partitions = sorted(await fresh_partitions(consumers[0], topic) or ())
    if not partitions:
        raise RuntimeError(f"topic {topic} has no partitions to read; it should have been created at start")
    for n, consumer in enumerate(consumers):
        consumer.assign([TopicPartition(topic, p) for p in partitions[n :: len(consumers)]])


async def unread(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> int | None:
    """Messages published but not read yet: high-water mark minus position; None before every partition fetched.

    The high-water mark comes with each fetch; the design notes warn `end_offsets()` can be wrong.
    """
    total = 0
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None:
            return None
        total += max(0, highwater - await consumer.position(tp))
    return total


async def read_to_end(consumer: AIOKafkaConsumer, topic: str, timeout: float = 30.0) -> list[ConsumerRecord[Any, Any]]:
    """Every message of `topic` from its beginning up to its end as of now (`consumer` must not be started)."""
    await start_client(consumer)
    try:
        partitions = await assign_all(consumer, topic)
        messages: list[ConsumerRecord[Any, Any]] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    batch = await consumer.getmany(timeout_ms=200)
                    messages += [m for records in batch.values() for m in records]
                    if not batch and await unread(consumer, partitions) == 0:
                        return messages
        except TimeoutError as error:
            raise TopicBehind(topic, timeout) from error
    finally:
        await consumer.stop()


class TopicBehind(RunError):
    """A topic that could not be read to its end in time: a partition without a leader, or a broker too busy to
    answer. The message names the topic and what to check."""

    def __init__(self, topic: str, timeout: float) -> None:
        super().__init__(
            f"could not read topic {topic} to its end in {timeout:.0f} s: a partition without a leader, or a broker "
            "too busy to answer; check the broker (kafka-topics --describe), then try again"
        )
