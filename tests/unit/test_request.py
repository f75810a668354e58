import json

from ragsync.coordinator.request import CallerIdentity, page_query_text, page_request


def test_query_text() -> None:
    assert page_query_text("payment-service", "batch", 3) == "sync_payment-service_batch_page_3"


def test_page_request_has_the_contract_fields_and_metadata() -> None:
    request = page_request(CallerIdentity(), "devlab-service", "incremental", 2, 500, since="2026-01-01T00:00:00Z")
    assert (request.tenant_id, request.user_id) == ("rag-system", "system")
    assert request.query_text == "sync_devlab-service_incremental_page_2"
    meta = dict(request.metadata)
    assert set(meta) == {
        "target_service",
        "sync_type",
        "page",
        "limit",
        "since",
        "requester_service",
        "source",
        "timestamp",
        "envelope_json",
    }
    assert meta["target_service"] == "devlab-service"
    assert (meta["sync_type"], meta["page"], meta["limit"]) == ("incremental", "2", "500")
    assert (meta["requester_service"], meta["source"]) == ("rag-service", "rag-batch-sync")
    assert meta["timestamp"].endswith("Z")
    envelope = json.loads(meta["envelope_json"])
    assert list(envelope) == ["version", "timestamp", "request_id", "tenant_id", "user_id", "source", "payload"]
    assert envelope["version"] == "1.0" and envelope["source"] == "rag-service"
    assert envelope["payload"]["query_text"] == request.query_text
    inner = envelope["payload"]["metadata"]
    assert "envelope_json" not in inner
    assert inner == {k: v for k, v in meta.items() if k != "envelope_json"}


def test_since_only_when_given_and_request_ids_unique() -> None:
    first = page_request(CallerIdentity(tenant_id="t", user_id="u"), "s", "batch", 1, 10)
    second = page_request(CallerIdentity(tenant_id="t", user_id="u"), "s", "batch", 1, 10)
    assert "since" not in first.metadata
    ids = {json.loads(r.metadata["envelope_json"])["request_id"] for r in (first, second)}
    assert len(ids) == 2
