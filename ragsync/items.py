"""The rules that turn a service's record into an item: its id, tenant, text, payload, and whether it is a deletion.

A service with a schema (`ragsync.schemas`) follows it; any other service follows the generic rule: the id is the
first of `id`, `_id`, `uuid`, `item_id`, `key`, then the service's entity in snake and camel case (`payment-service`:
`payment_id`, `paymentId`; `hidden-courses`: `hidden_courses_id`, ..., `course_id`, `courseId`, the singular of its
last word); the text is a `field: value` line per non-empty leaf.
"""

from __future__ import annotations

import json
import re
import reprlib
from dataclasses import dataclass
from typing import Any

from ragsync.errors import RunError
from ragsync.schemas import Schemas, ServiceSchema, lookup

ID_FIELDS = ("id", "_id", "uuid", "item_id", "key")
ID_LIKE = re.compile(r"(?i)(id|uuid|key|ref)$")  # field names a person would take for an id
# Fields that are identifiers or bookkeeping, not meaning: kept in the payload, left out of the text.
NOT_TEXT = frozenset({"tenant_id", "updated_at", "created_at", "deleted_at"})
GENERIC_DELETED = ("deleted", "is_deleted", "_deleted")
MAX_DEPTH = 64  # nesting levels the text follows; a record too deep to encode is dead-lettered
# Nesting levels a record may have: well under the 200 levels pydantic's JSON reader takes (the embedder reads its
# item events with it), so that a record the fetcher sends is one the embedder can read; deeper, it is
# dead-lettered by the fetcher with this reason, not by the embedder as an unreadable event.
MAX_RECORD_DEPTH = 128
ORIGINAL_MAX_CHARS = 65_536  # how much of a rejected record a dead letter keeps
SURROGATE = re.compile("[\ud800-\udfff]")  # lone UTF-16 halves: valid in a Python str, invalid in UTF-8


NO_ID = "no id field"
OTHER_TENANT = "another tenant"  # a record naming a tenant outside its request's scope


class ItemError(RunError):
    """A record that cannot become an item: it is dead-lettered and its run goes on. The message names the
    service, the field and the value (fix the record upstream, then replay or sync again); `kind` is the reason in
    a few stable words (what a run's error counts by)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def id_fields(service: str) -> tuple[str, ...]:
    """Where a record's id may be, in order: the usual names, then the service's entity in snake and camel case,
    whole and as the singular of its last word (`hidden-courses`: `hidden_courses_id`, `hiddenCoursesId`,
    `course_id`, `courseId`)."""
    words = service.removesuffix("-service").replace("_", "-").split("-")
    entities = [words, [singular(words[-1])]]
    names = [f"{'_'.join(e)}_id" for e in entities] + [f"{e[0]}{''.join(w.title() for w in e[1:])}Id" for e in entities]
    return tuple(dict.fromkeys((*ID_FIELDS, names[0], names[2], names[1], names[3])))


def singular(word: str) -> str:
    """A plain English singular, enough for entity names: courses -> course, categories -> category."""
    if word.endswith("ies") and len(word) > 3:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def item_id_of(record: dict[str, Any], service: str) -> str:
    """The record's id as text; `ItemError` if it has none or it is not a string or integer."""
    for name in id_fields(service):
        if name in record:
            return _check_id(record[name], service, name)
    raise ItemError(missing_id(record, service), NO_ID)


def missing_id(record: dict[str, Any], service: str) -> str:
    """Why a record has no id, and the schema that would give it one: the fields that look like ids, if any."""
    looked = f"{service} record has no id field (looked for {', '.join(id_fields(service))})"
    candidates = [key for key in record if isinstance(key, str) and ID_LIKE.search(key)]
    if not candidates:
        return f"{looked}; no field looks like an id: add SCHEMAS_DIR/{service}.toml with id_field naming it"
    return (
        f"{looked}; fields that look like ids: {', '.join(candidates[:5])}; add SCHEMAS_DIR/{service}.toml with "
        f'id_field = "{candidates[0]}"'
    )


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


def _check_id(value: Any, service: str, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ItemError(f"{service} record field {name}={value!r:.60} is not a string or integer id", "bad id")
    text = str(value).strip()
    if not text:
        raise ItemError(f"{service} record field {name} is empty", "empty id")
    if SURROGATE.search(text):
        # No UTF-8 for it: the id could be neither a Kafka key nor a payload, nor stay the Coordinator's id if
        # replaced (two ids would become one).
        raise ItemError(f"{service} record field {name}={value!r:.60} holds a lone UTF-16 surrogate", "bad id")
    return text


def _render(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_render(v) for v in value if v not in (None, ""))
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


@dataclass(frozen=True)
class RecordItem:
    """What a record is as an item: its id, its tenant, and whether it was deleted upstream."""

    item_id: str
    tenant_id: str
    deleted: bool


def _id_by(schema: ServiceSchema | None, record: dict[str, Any], service: str) -> str:
    if schema is None:
        return item_id_of(record, service)
    value = lookup(record, schema.id_field)
    if value is None:
        raise ItemError(f"{service} record has no {schema.id_field} (its schema's id_field)", NO_ID)
    return _check_id(value, service, schema.id_field)


def _tenant_by(schema: ServiceSchema | None, record: dict[str, Any], default: str, service: str) -> str:
    if schema is None or schema.tenant_field is None:
        return default
    value = lookup(record, schema.tenant_field)
    if isinstance(value, str) and SURROGATE.search(value):
        # Neither the default tenant (the record names another) nor a repaired one (two tenants could become one).
        raise ItemError(
            f"{service} record field {schema.tenant_field}={value!r:.60} holds a lone UTF-16 surrogate", "bad tenant"
        )
    return str(value) if isinstance(value, (str, int)) and str(value).strip() else default


def _deleted_by(schema: ServiceSchema | None, record: dict[str, Any]) -> bool:
    if schema is not None and schema.deleted_field is not None:
        return bool(lookup(record, schema.deleted_field))
    return any(record.get(name) is True for name in GENERIC_DELETED) or bool(record.get("deleted_at"))


def _text_by(schema: ServiceSchema | None, record: dict[str, Any], service: str) -> str:
    if schema is None:
        return item_text(record, service)
    lines = []
    if schema.title_field and (title := lookup(record, schema.title_field)) not in (None, ""):
        lines.append(_render(title))
    for path in schema.text_fields:
        value = lookup(record, path)
        if value not in (None, "", []):
            lines.append(f"{schema.labels.get(path, path)}: {_render(value)}")
    return "\n".join(lines)


def _payload_by(schema: ServiceSchema | None, record: dict[str, Any]) -> dict[str, Any]:
    if schema is None or schema.payload_fields is None:
        return storable(record)
    return storable({path: lookup(record, path) for path in schema.payload_fields})


INT64 = range(-(2**63), 2**63)


def storable(record: dict[str, Any]) -> dict[str, Any]:
    """`record` as the store takes it: integers past 64 bits, which it refuses (and with them the whole batch),
    kept as their decimal text; everything else as it is."""
    return {key: _storable(value) for key, value in record.items()}


def _storable(value: Any) -> Any:
    if isinstance(value, dict):
        return storable(value)
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
        return str(value)
    return value


@dataclass(frozen=True)
class ItemContent:
    """What an item stores: the text to embed, and the record's fields kept in the payload."""

    text: str
    payload: dict[str, Any]


class ItemRules:
    """Id, tenant, text, payload and deletion of a record, by its service's schema or the generic rule."""

    def __init__(self, schemas: Schemas | None = None) -> None:
        self._schemas = schemas

    def schema(self, service: str) -> ServiceSchema | None:
        """The service's schema, if any."""
        return self._schemas.get(service) if self._schemas else None

    def read(self, record: dict[str, Any], service: str, default_tenant: str) -> RecordItem:
        """A record as an item, in one pass over its service's schema: its id, its tenant and whether it was
        deleted upstream. `ItemError` naming the field and value when it has no usable id or tenant."""
        schema = self.schema(service)
        if (depth := depth_of(record)) > MAX_RECORD_DEPTH:
            raise ItemError(
                f"{service} record nests {depth} levels deep, over the {MAX_RECORD_DEPTH} an item event holds",
                "too deep",
            )
        return RecordItem(
            _id_by(schema, record, service),
            _tenant_by(schema, record, default_tenant, service),
            _deleted_by(schema, record),
        )

    def item_id(self, record: dict[str, Any], service: str) -> str:
        """The record's id as text; `ItemError` naming the field and value when it has none usable."""
        return _id_by(self.schema(service), record, service)

    def tenant(self, record: dict[str, Any], service: str, default: str) -> str:
        """The record's own tenant when its schema names a tenant field and it is set, else `default`."""
        return _tenant_by(self.schema(service), record, default, service)

    def is_deleted(self, record: dict[str, Any], service: str) -> bool:
        """Whether the record says the item was deleted upstream."""
        return _deleted_by(self.schema(service), record)

    def content(self, record: dict[str, Any], service: str) -> ItemContent:
        """What an item stores, in one pass over its service's schema: the text to embed and the payload."""
        schema = self.schema(service)
        return ItemContent(_text_by(schema, record, service), _payload_by(schema, record))

    def text(self, record: dict[str, Any], service: str) -> str:
        """The text to embed."""
        return _text_by(self.schema(service), record, service)

    def payload(self, record: dict[str, Any], service: str) -> dict[str, Any]:
        """The record's fields kept in the point's payload."""
        return _payload_by(self.schema(service), record)
