"""The generic rules that turn a service's record into an item: its id and the text that gets embedded."""

from __future__ import annotations

import json
import re
import reprlib
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


def _lines(value: Any, path: str, depth: int = 0) -> list[str]:
    if value is None or value == "" or isinstance(value, bool):
        return []
    if depth >= MAX_DEPTH:
        return [f"{path}: {json.dumps(value, ensure_ascii=False, default=str)[:1000]}"]
    if isinstance(value, dict):
        return [
            line for key, inner in value.items() for line in _lines(inner, f"{path}.{key}" if path else key, depth + 1)
        ]
    if isinstance(value, list):
        return [line for inner in value for line in _lines(inner, path, depth + 1)]
    return [f"{path}: {value}"]


def item_text(record: dict[str, Any], service: str) -> str:
    """The text to embed: `field: value` lines for every non-empty leaf, ids and timestamps left out."""
    skip = set(id_fields(service)) | NOT_TEXT
    lines = [line for key, value in record.items() if key not in skip for line in _lines(value, key)]
    return "\n".join(lines)


MAX_DEPTH = 64  # nesting levels the text follows; a record too deep to encode is dead-lettered
ORIGINAL_MAX_CHARS = 65_536  # how much of a rejected record a dead letter keeps
SURROGATE = re.compile("[\ud800-\udfff]")  # lone UTF-16 halves: valid in a Python str, invalid in UTF-8


def depth_of(value: Any) -> int:
    """How deeply `value` nests (iteratively: a hostile record must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(current, dict):
            stack.extend((inner, level + 1) for inner in current.values())
        elif isinstance(current, list):
            stack.extend((inner, level + 1) for inner in current)
    return deepest


def repair_surrogates(value: Any) -> Any:
    """A copy with lone UTF-16 surrogates (invalid in UTF-8) replaced by U+FFFD."""
    if isinstance(value, str):
        return SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {repair_surrogates(k): repair_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [repair_surrogates(v) for v in value]
    return value


def record_text(record: Any, limit: int = ORIGINAL_MAX_CHARS) -> str:
    """A rejected record as text for its dead letter: JSON when possible, at most `limit` characters."""
    try:
        text = json.dumps(record, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):
        shortener = reprlib.Repr()
        shortener.maxlevel, shortener.maxstring, shortener.maxother = 8, limit, limit
        text = shortener.repr(record)
    text = SURROGATE.sub("\ufffd", text)
    return text if len(text) <= limit else text[:limit] + f"... [truncated from {len(text)} characters]"
