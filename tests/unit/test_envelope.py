import json

import pytest

from ragsync.coordinator.coordinator_errors import BadPageError
from ragsync.coordinator.envelope import records_from_envelope

RECORDS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


@pytest.mark.parametrize(
    "document",
    [
        {"payload": {"data": RECORDS}},
        {"data": {"items": RECORDS}},
        {"data": RECORDS},
        {"successfulResult": {"data": RECORDS}},
        RECORDS,
    ],
    ids=["payload.data", "data.items", "data", "successfulResult.data", "top-level list"],
)
def test_each_known_shape(document: object) -> None:
    assert records_from_envelope(json.dumps(document), "svc", 1) == RECORDS


def test_precedence_payload_data_before_data() -> None:
    document = {"payload": {"data": RECORDS[:1]}, "data": RECORDS}
    assert records_from_envelope(json.dumps(document), "svc", 1) == RECORDS[:1]


def test_empty_list_is_an_empty_page() -> None:
    assert records_from_envelope('{"data": []}', "svc", 3) == []


def test_not_json_names_service_page_and_size_and_keeps_its_start_out_of_the_message() -> None:
    with pytest.raises(BadPageError) as raised:
        records_from_envelope("<html>502 Bad Gateway</html>", "payment-service", 7)
    message = str(raised.value)
    assert "payment-service page 7" in message and "not JSON" in message and "(28 characters;" in message
    # The message is the run's error on /status, which never shows what the page held; the log shows its start.
    assert "<html>" not in message and raised.value.start == "<html>502 Bad Gateway</html>"


def test_json_without_records_is_bad_not_empty() -> None:
    with pytest.raises(BadPageError, match="no list of records"):
        records_from_envelope('{"data": {"count": 3}}', "svc", 2)


def test_list_of_non_objects_is_bad() -> None:
    with pytest.raises(BadPageError, match="2 of 3 records at data are not objects"):
        records_from_envelope('{"data": [{"id": 1}, 2, "x"]}', "svc", 1)
