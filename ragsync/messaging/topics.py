"""Topic names (one common prefix) and their creation with an explicit partition count."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import NoError, TopicAlreadyExistsError, for_code
from aiokafka.protocol.api import Response

from ragsync.errors import SetupError
from ragsync.messaging.kafka import KafkaOptions, security_options

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Topics:
    """The four topics of the data path."""

    sync_requests: str
    items: str
    sync_runs: str  # the run state: keyed records, compacted (see ragsync.keys)
    dead_letters: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        """The topic names under a prefix (KAFKA_TOPIC_PREFIX)."""
        return cls(
            sync_requests=f"{prefix}sync-requests",
            items=f"{prefix}items",
            sync_runs=f"{prefix}sync-runs",
            dead_letters=f"{prefix}dead-letters",
        )

    def all(self) -> list[str]:
        """Every topic name."""
        return [self.sync_requests, self.items, self.sync_runs, self.dead_letters]


# Kafka Connect's rule for its offsets topic, for the same reason: on a topic that deletes by age, run state and
# cursors silently disappear after retention.ms (7 days by default).
STATE_TOPIC_CONFIG = {"cleanup.policy": "compact"}


class StateTopicPolicyError(SetupError):
    """The run-state topic exists with a cleanup policy that would delete run state and cursors: no component
    starts on it. The message names the topic and its policy, and gives the command that compacts it."""


async def ensure_topics(kafka: KafkaOptions, topics: Topics) -> Topics:
    """Create the topics that do not exist yet (the run-state topic compacted), and refuse a run-state topic that
    deletes old records. Existing topics are otherwise left as they are."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers, client_id="ragsync-admin", **security_options(kafka)
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics.all() if name not in existing]
        if missing:
            new = [_new_topic(kafka, name, topics) for name in missing]
            check_created(await admin.create_topics(new), kafka)
            log.info("created topics %s with %d partitions", missing, kafka.partitions)
        check_policy(topics.sync_runs, await cleanup_policy(admin, topics.sync_runs))
    finally:
        await admin.close()
    return topics


def check_created(response: Response, kafka: KafkaOptions) -> None:
    """Raise `SetupError` naming the first topic the broker refused to create, and why: the admin client returns
    each topic's error in its answer rather than raising it. One created meanwhile by another component is fine."""
    for topic, code, *message in response.topic_errors:
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            log.info("topic %s was created meanwhile by another component", topic)
        if error in (NoError, TopicAlreadyExistsError):
            continue
        detail = f": {message[0]}" if message and message[0] else ""
        raise SetupError(
            f"Kafka refused to create topic {topic!r} ({error.__name__}{detail}) with {kafka.partitions} partitions "
            f"and replication factor {kafka.replication_factor}: check KAFKA_PARTITIONS and KAFKA_REPLICATION_FACTOR "
            "against the cluster, and that this principal may create topics, or create the topics beforehand"
        )


def _new_topic(kafka: KafkaOptions, name: str, topics: Topics) -> NewTopic:
    configs = STATE_TOPIC_CONFIG if name == topics.sync_runs else {}
    return NewTopic(name, kafka.partitions, kafka.replication_factor, topic_configs=configs)


async def cleanup_policy(admin: AIOKafkaAdminClient, topic: str) -> str | None:
    """The topic's cleanup.policy, or None when the broker does not report it (the local broker reports only
    what a topic was created with)."""
    # Every config is asked for: the local broker drops the connection when asked for named ones.
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, None)])
    for resource in response.resources:
        for entry in resource[4]:  # (error_code, error_message, type, name, config_entries)
            if entry[0] == "cleanup.policy":
                return str(entry[1])
    return None


def check_policy(topic: str, policy: str | None) -> None:
    """Raise, in one line naming the fix, when the run-state topic is not compacted."""
    if policy is None or policy == "compact":  # "compact,delete" still deletes by age
        return
    raise StateTopicPolicyError(
        f"topic {topic} has cleanup.policy={policy}: run state and cursors would be deleted after its retention. "
        f"Set it to compact (kafka-configs.sh --alter --entity-type topics --entity-name {topic} "
        "--add-config cleanup.policy=compact) or set KAFKA_TOPIC_PREFIX to start on new topics"
    )
