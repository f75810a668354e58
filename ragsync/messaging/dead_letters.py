"""Dead letters: the one place that writes what a stage could not do, lists it, and re-submits it once the cause
is fixed."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError

from ragsync.events import DeadLetter
from ragsync.items import SURROGATE
from ragsync.keys import item_key
from ragsync.messaging.kafka import KafkaOptions, Publisher, make_consumer, read_to_end
from ragsync.messaging.topics import Topics
from ragsync.operations import metrics

log = logging.getLogger(__name__)
REJECTED = "rejected"  # the key of letters that name no run (a message that could not be read at all)


async def send_dead_letter(publisher: Publisher, topics: Topics, letter: DeadLetter) -> None:
    """Queue a dead letter, keyed by its run so that a run's letters stay in order, and count it by stage. The
    caller logs it with what it knows; the publisher's next flush delivers it."""
    metrics.DEAD_LETTERS.labels(metrics.stage_label(letter.stage)).inc()
    await publisher.send(topics.dead_letters, letter.run_id or REJECTED, encodable(letter))


def encodable(letter: DeadLetter) -> DeadLetter:
    """The letter with each lone UTF-16 surrogate in its texts replaced by U+FFFD. A reason quotes the record (a
    field name, an id), and a surrogate has no UTF-8: unreplaced, writing the letter would fail, and with it the
    run the record came in, instead of the one record."""
    repaired = {
        name: SURROGATE.sub("\ufffd", value)
        for name, value in letter
        if isinstance(value, str) and SURROGATE.search(value)
    }
    return letter.model_copy(update=repaired) if repaired else letter


@dataclass(frozen=True)
class StoredLetter:
    """A dead letter and where it sits in the dead-letter topic."""

    partition: int
    offset: int
    letter: DeadLetter

    @property
    def ref(self) -> str:
        """`partition/offset`, unique within the topic."""
        return f"{self.partition}/{self.offset}"


async def list_dead_letters(
    kafka: KafkaOptions, topics: Topics, run_id: str | None = None, stage: str | None = None
) -> list[StoredLetter]:
    """Every dead letter (optionally of one run, by its id or the start of it, or of one stage), oldest first."""
    consumer = make_consumer(kafka, group_id=None)
    letters = []
    for message in await read_to_end(consumer, topics.dead_letters):
        try:
            letter = DeadLetter.model_validate_json(message.value or b"")
        except ValidationError as error:
            log.error("unreadable dead letter at %d/%d: %s", message.partition, message.offset, error)
            continue
        of_run = run_id is None or (letter.run_id or "").startswith(run_id)  # tables show 12 characters of an id
        if of_run and (stage is None or letter.stage == stage):
            letters.append(StoredLetter(message.partition, message.offset, letter))
    return letters


def replay_target(letter: DeadLetter, topics: Topics) -> str | None:
    """The topic a letter's original goes back to, or None when it did not come from a topic of ours."""
    return letter.source_topic if letter.source_topic in (topics.items, topics.sync_requests) else None


async def replay(publisher: Publisher, topics: Topics, letters: list[StoredLetter]) -> tuple[int, list[StoredLetter]]:
    """Re-submit each replayable original to its topic; the count sent and the letters that cannot be."""
    sent, skipped = 0, []
    for stored in letters:
        letter = stored.letter
        target = replay_target(letter, topics)
        if target is None:
            skipped.append(stored)
            continue
        key = None
        if target == topics.items and letter.tenant_id and letter.service and letter.item_id:
            key = item_key(letter.tenant_id, letter.service, letter.item_id).encode()
        headers = [("ragsync-replay-of", f"{topics.dead_letters}/{stored.ref}".encode())]
        await publisher.send_raw(target, key, letter.original.encode("utf-8"), headers)
        sent += 1
    await publisher.flush()
    return sent, skipped
