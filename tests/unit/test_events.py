import json

import pytest
from pydantic import ValidationError

from ragsync.events import ItemEvent, SyncRequest, describe_validation_error


def test_minimal_hand_written_request_gets_defaults() -> None:
    request = SyncRequest.model_validate_json('{"service": "payment-service"}')
    assert request.sync_type == "batch" and request.tenant_id is None and len(request.run_id) == 32


def test_round_trip() -> None:
    request = SyncRequest(service="devlab-service", sync_type="incremental", since="2026-01-01T00:00:00Z")
    assert SyncRequest.model_validate_json(request.to_bytes()) == request


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"service": "payment-service", "servce": "x"}, "servce='x'"),
        ({"service": "payment-service", "sync_type": "hourly"}, "sync_type='hourly'"),
        ({"service": "Payment Service"}, "service='Payment Service'"),
        ({"service": "payment-service", "since": "yesterday"}, "since='yesterday'"),
        ({}, "service="),
    ],
)
def test_bad_request_error_names_field_and_value(payload: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as raised:
        SyncRequest.model_validate_json(json.dumps(payload))
    assert fragment in describe_validation_error(raised.value)


def test_item_key() -> None:
    item = ItemEvent(run_id="r", tenant_id="t", service="s", item_id="42", page=1, record={"id": 42})
    assert item.key == "t/s/42"
