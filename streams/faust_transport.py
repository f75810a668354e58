"""faust's aiokafka transport, with the consumer's fetch wait taken from the Kafka options.

faust's driver creates its consumer with a fixed 1.5 s fetch wait. Kafka answers a waiting fetch as soon as an
event arrives, so there the wait costs nothing; the local broker instead looks again at intervals within the wait
(after half of it, then half of the rest), so a sync request published into an idle 1.5 s fetch could wait up to
0.75 s before the fetcher saw it. With `kafka_fetch_max_wait_ms` (200 ms) it waits at most 0.2 s.

faust has no setting for this wait; this module is its only override, on the consumer object faust creates and
before faust starts it.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as driver


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # aiokafka reads it in `start`; fail loudly if renamed
            raise RuntimeError(
                f"aiokafka {aiokafka.__version__} has no AIOKafkaConsumer._fetch_max_wait_ms; "
                "streams/faust_transport.py needs updating for this version"
            )
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    """faust's Kafka transport whose consumer's fetches wait `fetch_max_wait_ms` at most."""

    Consumer = _Consumer

    def __init__(self, url: Any, app: Any, *, fetch_max_wait_ms: int) -> None:
        super().__init__(url, app)
        self.fetch_max_wait_ms = fetch_max_wait_ms
