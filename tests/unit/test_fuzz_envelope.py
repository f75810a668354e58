"""Envelope fuzzing: whatever the Coordinator answers, a page is its records or one `BadPageError` naming why."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ragsync.coordinator.client import CoordinatorClient
from ragsync.coordinator.coordinator_errors import BadPageError, PagingError
from ragsync.coordinator.envelope import RECORD_PATHS, records_from_envelope
from ragsync.coordinator.paging import PageQuery, iterate_pages
from ragsync.coordinator.request import CallerIdentity
from ragsync.proto import coordinator_pb2
from tests.nasty_data import any_text, json_values, wire_text

EXAMPLES = 400
records = st.lists(st.dictionaries(any_text, json_values, max_size=4), max_size=5)
# Documents shaped like an envelope, with each part of it the wrong type now and then.
envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "payload": st.one_of(json_values, st.fixed_dictionaries({"data": st.one_of(json_values, records)})),
        "data": st.one_of(json_values, records, st.fixed_dictionaries({"items": st.one_of(json_values, records)})),
        "successfulResult": st.one_of(json_values, st.fixed_dictionaries({"data": json_values})),
        "has_more": json_values,
    },
)
documents = st.one_of(json_values, envelope_like, records)


def _dumps(document: Any) -> str:
    # As a Coordinator might write it: non-finite numbers as NaN and Infinity, lone surrogates as \ud800 escapes.
    return json.dumps(document)


def _lookup(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


def _expected_records(document: Any) -> Any:
    """Where the contract says the records are: the document itself when a list, else the first path holding a
    list; None when there are none."""
    if isinstance(document, list):
        return document
    found = [_lookup(document, path) for path in RECORD_PATHS]
    return next((value for value in found if isinstance(value, list)), None)


def _same(left: Any, right: Any) -> bool:
    return _dumps(left) == _dumps(right)  # NaN is not equal to itself; its JSON is


@given(documents)
@settings(max_examples=EXAMPLES, deadline=None)
def test_any_json_document_is_its_records_or_a_bad_page(document: Any) -> None:
    expected = _expected_records(document)
    try:
        found = records_from_envelope(_dumps(document), "svc", 4)
    except BadPageError as error:
        assert (error.service, error.page) == ("svc", 4)
        assert "\n" not in str(error)
        assert expected is None or any(not isinstance(record, dict) for record in expected)
    else:
        assert expected is not None and _same(found, expected)
        assert all(isinstance(record, dict) for record in found)


@given(records, st.sampled_from(RECORD_PATHS))
@settings(max_examples=EXAMPLES, deadline=None)
def test_records_in_a_known_shape_come_back_whole(page: list[dict[str, Any]], path: tuple[str, ...]) -> None:
    document: Any = page
    for key in reversed(path):
        document = {key: document}
    assert _same(records_from_envelope(_dumps(document), "svc", 1), page)


@given(st.one_of(st.text(), any_text, st.binary().map(lambda raw: raw.decode("latin-1"))))
@settings(max_examples=EXAMPLES, deadline=None)
@example("<html>502 Bad Gateway</html>")
@example("[" * 100_000)
@example('{"data": [' * 50_000)
@example('{"data": [{"id": ' + "9" * 5_000 + "}]}")  # past Python's limit on an integer's digits
@example('{"data": [{"id": 1e999999}]}')
@example("")
def test_any_text_is_its_records_or_a_bad_page(text: str) -> None:
    try:
        found = records_from_envelope(text, "svc", 2)
    except BadPageError as error:
        assert error.page == 2 and "\n" not in str(error)
    else:
        assert all(isinstance(record, dict) for record in found)


class _AnsweringClient:
    """Stands in for the gRPC client: answers every page with one envelope and one `has_more`."""

    def __init__(self, envelope: str, has_more: str) -> None:
        self.envelope, self.has_more = envelope, has_more

    async def route(
        self, request: coordinator_pb2.RouteRequest, timeout: float, service: str, page: int
    ) -> coordinator_pb2.RouteResponse:
        envelope = self.envelope.replace("PAGE", str(page))  # each page differs, or paging stops as repeated
        return coordinator_pb2.RouteResponse(envelope_json=envelope, normalized_fields={"has_more": self.has_more})


@given(st.one_of(wire_text, st.sampled_from(["true", "FALSE", "True", "yes", "1", "", " true", "null", "[]"])))
@settings(max_examples=EXAMPLES, deadline=None)
async def test_any_has_more_is_read_or_refused_by_name(has_more: str) -> None:
    client = _AnsweringClient('{"data": [{"id": "PAGE"}]}', has_more)
    pages = iterate_pages(
        cast(CoordinatorClient, client),
        CallerIdentity(tenant_id="t", user_id="u"),
        PageQuery("svc", limit=1),
        1.0,
        max_pages=3,
    )
    numbers: list[int] = []
    try:
        numbers = [page.number async for page in pages]
    except PagingError as error:
        readable = has_more.lower() == "true"
        assert "has_more" in str(error) or (readable and "more than 3 pages" in str(error))
        assert "\n" not in str(error)
    else:
        assert has_more.lower() == "false" and numbers == [1]


def test_the_known_answers_of_has_more_page_on_and_stop() -> None:
    # The property above must be able to tell a read `has_more` from a refused one.
    assert records_from_envelope('{"data": [{"id": 1}]}', "svc", 1) == [{"id": 1}]
    with pytest.raises(BadPageError, match="not JSON"):
        records_from_envelope("{", "svc", 1)


def test_an_integer_past_the_digit_limit_is_a_bad_page_naming_it() -> None:
    with pytest.raises(BadPageError, match=r"not readable JSON \(Exceeds the limit \(4300 digits\)") as raised:
        records_from_envelope('{"data": [{"id": ' + "7" * 5_000 + "}]}", "svc", 3)
    assert "set_int_max_str_digits" not in str(raised.value)
