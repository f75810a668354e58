"""Per-service schemas: which field is the id, which make the text, which stay in the payload.

One TOML file per service, `<service>.toml`, in SCHEMAS_DIR (the demo services' schemas ship with ragsync and
a file in SCHEMAS_DIR replaces the built-in one). Every file is validated at start-up; a service without a
schema uses the generic rule (`ragsync.items`).
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ragsync.errors import SetupError
from ragsync.events import describe_validation_error

FIELD_PATH = r"^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*$"


class ServiceSchema(BaseModel):
    """How one service's records become items."""

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


def lookup(record: Any, path: str) -> Any:
    """The value at a dotted path; lists are searched element-wise (a list of their values); None if absent."""
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

    def get(self, service: str) -> ServiceSchema | None:
        """The service's schema, if it has one."""
        return self._schemas.get(service)

    @property
    def services(self) -> list[str]:
        """Services with a schema."""
        return sorted(self._schemas)
