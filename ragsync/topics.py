"""Topic names (one common prefix) and their creation with an explicit partition count."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ragsync.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topics:
    """The four topics of the data path."""

    sync_requests: str
    items: str
    sync_runs: str
    dead_letters: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        """Topic names under KAFKA_TOPIC_PREFIX."""
        prefix = settings.kafka_topic_prefix
        return cls(
            sync_requests=f"{prefix}sync-requests",
            items=f"{prefix}items",
            sync_runs=f"{prefix}sync-runs",
            dead_letters=f"{prefix}dead-letters",
        )

    def all(self) -> list[str]:
        """Every topic name."""
        return [self.sync_requests, self.items, self.sync_runs, self.dead_letters]


async def ensure_topics(settings: Settings, bootstrap_servers: str) -> Topics:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    topics = Topics.from_settings(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="ragsync-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics.all() if name not in existing]
        if missing:
            new = [NewTopic(n, settings.kafka_partitions, settings.kafka_replication_factor) for n in missing]
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                log.info("topics were created concurrently by another component: %s", missing)
            log.info("created topics %s with %d partitions", missing, settings.kafka_partitions)
    finally:
        await admin.close()
    return topics
