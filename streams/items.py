"""The generic rules that turn a service's record into an item: its id and the text that gets embedded."""

from __future__ import annotations

from typing import Any

ID_FIELDS = ("id", "_id", "uuid", "item_id")
# Fields that are identifiers or bookkeeping, not meaning: kept in the payload, left out of the text.
NOT_TEXT = frozenset({"tenant_id", "updated_at", "created_at", "deleted_at"})


class ItemError(ValueError):
    """A record that cannot become an item; the message names the field and value."""


def id_fields(service: str) -> tuple[str, ...]:
    """Where a record's id may be, in order: the usual names, then `{service stem}_id` (`payment_id`...)."""
    stem = service.removesuffix("-service").replace("-", "_")
    return (*ID_FIELDS, f"{stem}_id")


def item_id_of(record: dict[str, Any], service: str) -> str:
    """The record's id as text; `ItemError` if it has none or it is not a string or integer."""
    for name in id_fields(service):
        if name in record:
            value = record[name]
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise ItemError(f"{service} record field {name}={value!r:.60} is not a string or integer id")
            text = str(value).strip()
            if not text:
                raise ItemError(f"{service} record field {name} is empty")
            return text
    raise ItemError(f"{service} record has no id field (looked for {', '.join(id_fields(service))})")


def _lines(value: Any, path: str) -> list[str]:
    if value is None or value == "" or isinstance(value, bool):
        return []
    if isinstance(value, dict):
        return [line for key, inner in value.items() for line in _lines(inner, f"{path}.{key}" if path else key)]
    if isinstance(value, list):
        return [line for inner in value for line in _lines(inner, path)]
    return [f"{path}: {value}"]


def item_text(record: dict[str, Any], service: str) -> str:
    """The text to embed: `field: value` lines for every non-empty leaf, ids and timestamps left out."""
    skip = set(id_fields(service)) | NOT_TEXT
    lines = [line for key, value in record.items() if key not in skip for line in _lines(value, key)]
    return "\n".join(lines)
