"""Finding the records in a `RouteResponse.envelope_json`, in the five shapes the Coordinator is known to send."""

from __future__ import annotations

import json
from typing import Any

from ragsync.coordinator.coordinator_errors import BadPageError

# Where the records are, in order of precedence (coordinator contract, "Reading the response").
RECORD_PATHS: tuple[tuple[str, ...], ...] = (
    ("payload", "data"),
    ("data", "items"),
    ("data",),
    ("successfulResult", "data"),
)


def _lookup(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


def _first_clause(error: ValueError) -> str:
    # "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits; use sys.set_int_..."
    # names a remedy in this process, which is not the Coordinator's to apply.
    return str(error).split(";")[0]


def records_from_envelope(envelope_json: str, service: str, page: int) -> list[dict[str, Any]]:
    """The records of one page; `BadPageError` when the text is not JSON or holds no list of objects."""
    try:
        document = json.loads(envelope_json)
    except json.JSONDecodeError as error:
        raise BadPageError(service, page, f"not JSON ({error.msg} at position {error.pos})", envelope_json) from error
    except RecursionError as error:
        raise BadPageError(service, page, "JSON nested too deeply to parse", envelope_json) from error
    except ValueError as error:  # an integer past Python's limit on digits, which the decoder does not wrap
        raise BadPageError(service, page, f"not readable JSON ({_first_clause(error)})", envelope_json) from error
    if isinstance(document, list):
        records, where = document, "the document itself"
    else:
        found = [(path, _lookup(document, path)) for path in RECORD_PATHS]
        lists = [(path, value) for path, value in found if isinstance(value, list)]
        if not lists:
            paths = ", ".join(".".join(p) for p in RECORD_PATHS)
            raise BadPageError(service, page, f"no list of records at {paths}, nor a top-level list", envelope_json)
        path, records = lists[0]
        where = ".".join(path)
    not_objects = [i for i, record in enumerate(records) if not isinstance(record, dict)]
    if not_objects:
        first = not_objects[0]
        raise BadPageError(
            service,
            page,
            f"{len(not_objects)} of {len(records)} records at {where} are not objects "
            f"(record {first} is {type(records[first]).__name__})",
            envelope_json,
        )
    return records
