"""Kafka records decoded at the edge: a typed event with where it sits, or the reason it is unreadable. Stages
take these, never a `ConsumerRecord`, so they run without a broker in unit tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from ragsync.events import Event, describe_validation_error

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Position:
    """Where a record sits: its topic, partition and offset."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Delivered(Generic[E]):
    """An event read from a topic, and where it sits."""

    event: E
    at: Position


@dataclass(frozen=True)
class Unreadable:
    """A record that is not a valid event: where it sits, why, and its bytes as text (for its dead letter)."""

    at: Position
    reason: str
    original: str


def decode_value(model: type[E], value: bytes | None, at: Position) -> Delivered[E] | Unreadable:
    """One record's value as a `model` event, or as unreadable with the bad fields and values named."""
    raw = bytes(value or b"")
    try:
        return Delivered(model.model_validate_json(raw), at)
    except ValidationError as error:
        return Unreadable(at, describe_validation_error(error), raw.decode("utf-8", errors="replace"))


def decode(model: type[E], records: Iterable[ConsumerRecord[Any, Any]]) -> tuple[list[Delivered[E]], list[Unreadable]]:
    """Each record as a `model` event, or as unreadable with the bad fields and values named."""
    delivered: list[Delivered[E]] = []
    unreadable: list[Unreadable] = []
    for record in records:
        decoded = decode_value(model, record.value, Position(record.topic, record.partition, record.offset))
        if isinstance(decoded, Unreadable):
            unreadable.append(decoded)
        else:
            delivered.append(decoded)
    return delivered, unreadable
