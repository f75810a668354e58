"""Per-service schemas: which field is the id, which make the text, which stay in the payload.

One TOML file per service, `<service>.toml`, in SCHEMAS_DIR (the demo services' schemas ship with ragsync and
a file in SCHEMAS_DIR replaces the built-in one). Every file is validated at start-up; a service without a
schema uses the generic rule (`ragsync.items`).
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ragsync.errors import SetupError
from ragsync.events import describe_validation_error
from ragsync.items import NO_ID, SURROGATE, ItemError, RecordSchema, check_id, generic_schema, marked_deleted, storable

FIELD_PATH = r"^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*$"


class ServiceSchema(BaseModel):
    """How one service's records become items: it answers, for each record, its id, tenant, deletion, text and
    payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str
    id_field: str = Field(pattern=FIELD_PATH)
    tenant_field: str | None = Field(None, pattern=FIELD_PATH, description="The record's tenant, if it has one.")
    title_field: str | None = Field(None, pattern=FIELD_PATH, description="Its value opens the text, unlabelled.")
    text_fields: list[str] = Field(min_length=1, description="Rendered as `label: value` lines, in this order.")
    labels: dict[str, str] = Field(default_factory=dict, description="Field path -> label in the text.")
    payload_fields: list[str] | None = Field(None, description="Fields kept in the payload; unset: all.")
    deleted_field: str | None = Field(None, pattern=FIELD_PATH, description="A truthy value deletes the item.")

    @field_validator("text_fields", "payload_fields")
    @classmethod
    def _paths(cls, value: list[str] | None) -> list[str] | None:
        for path in value or []:
            if not re.match(FIELD_PATH, path):
                raise ValueError(f"{path!r} is not a field path (names joined by dots)")
        return value

    @property
    def names_tenants(self) -> bool:
        """Whether its records may name their own tenant (in tenant_field)."""
        return self.tenant_field is not None

    def item_id(self, record: dict[str, Any]) -> str:
        """The record's id_field as text; `ItemError` naming the field and value when it is absent or unusable."""
        field = self.id_field  # a local: each attribute of a pydantic model costs more to read than a plain one's
        value = lookup(record, field)
        if value is None:
            raise ItemError(f"{self.service} record has no {field} (its schema's id_field)", NO_ID)
        return check_id(value, self.service, field)

    def tenant(self, record: dict[str, Any], default: str) -> str:
        """The tenant the record names in tenant_field, else `default`; `ItemError` when it holds a lone
        surrogate."""
        field = self.tenant_field
        if field is None:
            return default
        value = lookup(record, field)
        if isinstance(value, str) and SURROGATE.search(value):
            # Neither the default tenant (the record names another) nor a repaired one (two tenants could become one).
            raise ItemError(
                f"{self.service} record field {field}={value!r:.60} holds a lone UTF-16 surrogate",
                "bad tenant",
            )
        return str(value) if isinstance(value, (str, int)) and str(value).strip() else default

    def deleted(self, record: dict[str, Any]) -> bool:
        """Whether deleted_field is truthy; without one, whether the generic rule finds the record deleted."""
        field = self.deleted_field
        return marked_deleted(record) if field is None else bool(lookup(record, field))

    def text(self, record: dict[str, Any]) -> str:
        """The title_field's value, then a `label: value` line per non-empty text field."""
        lines, labels = [], self.labels  # a local: read once a record, not once a field
        if self.title_field and (title := lookup(record, self.title_field)) not in (None, ""):
            lines.append(_render(title))
        for path in self.text_fields:
            value = lookup(record, path)
            if value not in (None, "", []):
                lines.append(f"{labels.get(path, path)}: {_render(value)}")
        return "\n".join(lines)

    def payload(self, record: dict[str, Any]) -> dict[str, Any]:
        """The payload_fields (every field when unset), as the store takes them."""
        if self.payload_fields is None:
            return storable(record)
        return storable({path: lookup(record, path) for path in self.payload_fields})


def _render(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_render(v) for v in value if v not in (None, ""))
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def lookup(record: Any, path: str) -> Any:
    """The value at a dotted path; lists are searched element-wise (a list of their values); None if absent."""
    if "." not in path and isinstance(record, dict):
        # The usual case, a top-level field that is not a list, answered without building lists: this runs for
        # every field of every record.
        value = record.get(path)
        if not isinstance(value, list):
            return value
    values = [record]
    for key in path.split("."):
        nxt: list[Any] = []
        for value in values:
            if isinstance(value, dict) and key in value:
                nxt.append(value[key])
            elif isinstance(value, list):
                nxt += [item[key] for item in value if isinstance(item, dict) and key in item]
        values = [v for inner in nxt for v in (inner if isinstance(inner, list) else [inner])]
        if not values:
            return None
    return values[0] if len(values) == 1 else values


def load_schema(path: Path) -> ServiceSchema:
    """One schema file; `SetupError` naming the file, the field and the value when it is not valid."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SetupError(f"schema {path}: not valid TOML: {error}") from error
    try:
        schema = ServiceSchema.model_validate(data)
    except ValidationError as error:
        raise SetupError(f"schema {path}: {describe_validation_error(error)}") from error
    if path.stem != schema.service:
        raise SetupError(
            f"schema {path}: service = {schema.service!r} but the file is named {path.name!r}; "
            f"name it {schema.service}.toml"
        )
    return schema


class Schemas:
    """The schemas in force: built-in ones, replaced by those in a folder."""

    def __init__(self, schemas: dict[str, ServiceSchema]) -> None:
        self._schemas = schemas

    @classmethod
    def load(cls, folder: Path | None) -> Schemas:
        """Built-in schemas, then every `*.toml` in `folder` (validated; any error stops the start-up)."""
        found: dict[str, ServiceSchema] = {}
        builtin = resources.files("ragsync") / "schemas"
        for entry in builtin.iterdir():
            if entry.name.endswith(".toml"):
                with resources.as_file(entry) as path:
                    found[path.stem] = load_schema(path)
        if folder is not None and folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = load_schema(path)
        return cls(found)

    def get(self, service: str) -> RecordSchema:
        """The service's schema; for a service without one, the generic rule's."""
        schema = self._schemas.get(service)
        return schema if schema is not None else generic_schema(service)

    @property
    def services(self) -> list[str]:
        """Services with a schema."""
        return sorted(self._schemas)
