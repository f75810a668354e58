"""The rules that turn a service's record into an item: its id, tenant, text, payload, and whether it is a deletion.

A service with a schema (`ragsync.schemas`) follows it; any other service follows the generic rule, which
`GenericSchema` answers as a schema does: the id is the first of `id`, `_id`, `uuid`, `item_id`, `key`, then the
service's entity in snake and camel case (`payment-service`: `payment_id`, `paymentId`; `hidden-courses`:
`hidden_courses_id`, ..., `course_id`, `courseId`, the singular of its last word); the text is a `field: value` line
per non-empty leaf.
"""

from __future__ import annotations

import json
import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from ragsync.errors import RunError

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
NO_TENANT = "no tenant"  # in a run for one tenant, a record of a service whose records name theirs naming none


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
    """The record's id as text by the generic rule; `ItemError` if it has none or it is not a string or integer."""
    return generic_schema(service).item_id(record)


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
    """The text to embed by the generic rule: `field: value` lines for every non-empty leaf, ids and timestamps
    left out."""
    return generic_schema(service).text(record)


def marked_deleted(record: dict[str, Any]) -> bool:
    """Whether the record says, by the generic rule, that it was deleted upstream: a `deleted`-like flag that is
    true, or a `deleted_at` that is set."""
    return any(record.get(name) is True for name in GENERIC_DELETED) or bool(record.get("deleted_at"))


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


def check_id(value: Any, service: str, name: str) -> str:
    """The id in field `name` as text; `ItemError` naming the field and value when it is not a usable id."""
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


@dataclass(frozen=True)
class RecordItem:
    """What a record is as an item: its id, its tenant, and whether it was deleted upstream."""

    item_id: str
    tenant_id: str
    deleted: bool
    names_tenant: bool = False  # whether the tenant is the record's own, not the request's for want of one


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


class RecordSchema(Protocol):
    """What a service's schema answers about one of its records: a `ServiceSchema` (`ragsync.schemas`) for a
    service with one, a `GenericSchema` for any other."""

    @property
    def names_tenants(self) -> bool:
        """Whether its records may name their own tenant."""
        ...

    def item_id(self, record: dict[str, Any]) -> str: ...

    def tenant(self, record: dict[str, Any], default: str) -> str: ...

    def deleted(self, record: dict[str, Any]) -> bool: ...

    def text(self, record: dict[str, Any]) -> str: ...

    def payload(self, record: dict[str, Any]) -> dict[str, Any]: ...


class GenericSchema:
    """The schema of a service without one: the generic rule of this module's docstring. Where the id may be and
    what the text leaves out are worked out once per service, not once per record."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._id_fields = id_fields(service)
        self._not_text = frozenset(self._id_fields) | NOT_TEXT

    @property
    def names_tenants(self) -> bool:
        """Never: without a schema there is no tenant field, and every record is its request's tenant's."""
        return False

    def item_id(self, record: dict[str, Any]) -> str:
        """The first id field the record has, as text; `ItemError` naming the field and value when it has none
        usable, and what schema would give it one."""
        for name in self._id_fields:
            if name in record:
                return check_id(record[name], self.service, name)
        raise ItemError(missing_id(record, self.service), NO_ID)

    def tenant(self, record: dict[str, Any], default: str) -> str:
        """`default`: the record names no tenant of its own."""
        return default

    def deleted(self, record: dict[str, Any]) -> bool:
        """Whether a `deleted`-like flag or `deleted_at` marks the record deleted upstream."""
        return marked_deleted(record)

    def text(self, record: dict[str, Any]) -> str:
        """`field: value` lines for every non-empty leaf, ids and timestamps left out."""
        skip = self._not_text
        return "\n".join([line for key, value in record.items() if key not in skip for line in _lines(value, key)])

    def payload(self, record: dict[str, Any]) -> dict[str, Any]:
        """Every field of the record, as the store takes it."""
        return storable(record)


@lru_cache(maxsize=1024)  # bounded: services come from requests and events, not only from configuration
def generic_schema(service: str) -> GenericSchema:
    """The generic rule for `service`, built once per service."""
    return GenericSchema(service)


class SchemaSource(Protocol):
    """Where services' schemas come from: `ragsync.schemas.Schemas` (which builds its answers from this module's
    rules, so this module names only what it asks of it)."""

    def get(self, service: str) -> RecordSchema:
        """The service's schema; for a service without one, the generic rule's."""
        ...


class ItemRules:
    """Id, tenant, text, payload and deletion of a record, by its service's schema or the generic rule."""

    def __init__(self, schemas: SchemaSource | None = None) -> None:
        # Chosen once here, so that no record pays for asking whether there are schemas at all.
        self._schema_of: Callable[[str], RecordSchema] = schemas.get if schemas is not None else generic_schema

    def schema(self, service: str) -> RecordSchema:
        """The service's schema: its own, or the generic rule's."""
        return self._schema_of(service)

    def read(self, record: dict[str, Any], service: str, default_tenant: str) -> RecordItem:
        """A record as an item, asking its service's schema once: its id, its tenant and whether it was deleted
        upstream. `ItemError` naming the field and value when it has no usable id or tenant."""
        if (depth := depth_of(record)) > MAX_RECORD_DEPTH:
            raise ItemError(
                f"{service} record nests {depth} levels deep, over the {MAX_RECORD_DEPTH} an item event holds",
                "too deep",
            )
        schema = self._schema_of(service)
        own = schema.tenant(record, "") if schema.names_tenants else ""
        return RecordItem(schema.item_id(record), own or default_tenant, schema.deleted(record), bool(own))

    def item_id(self, record: dict[str, Any], service: str) -> str:
        """The record's id as text; `ItemError` naming the field and value when it has none usable."""
        return self._schema_of(service).item_id(record)

    def tenant(self, record: dict[str, Any], service: str, default: str) -> str:
        """The record's own tenant when its schema names a tenant field and it is set, else `default`."""
        return self._schema_of(service).tenant(record, default)

    def is_deleted(self, record: dict[str, Any], service: str) -> bool:
        """Whether the record says the item was deleted upstream."""
        return self._schema_of(service).deleted(record)

    def content(self, record: dict[str, Any], service: str) -> ItemContent:
        """What an item stores, asking its service's schema once: the text to embed and the payload."""
        schema = self._schema_of(service)
        return ItemContent(schema.text(record), schema.payload(record))

    def text(self, record: dict[str, Any], service: str) -> str:
        """The text to embed."""
        return self._schema_of(service).text(record)

    def payload(self, record: dict[str, Any], service: str) -> dict[str, Any]:
        """The record's fields kept in the point's payload."""
        return self._schema_of(service).payload(record)
