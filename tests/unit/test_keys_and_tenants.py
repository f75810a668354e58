"""One key scheme and one tenant resolution: requests and items keep the keys they always had on the wire, and
a request's tenant is decided once, where it comes in."""

import json

from ragsync.events import ItemEvent, SyncRequest, TenantRequest
from ragsync.keys import item_key, request_key


def test_request_and_item_keys_keep_their_wire_shape() -> None:
    assert request_key("acme", "payment-service") == "acme/payment-service"
    item = ItemEvent(run_id="r", tenant_id="acme", service="payment-service", item_id="p-1", page=1, record={})
    assert item.key == item_key("acme", "payment-service", "p-1") == "acme/payment-service/p-1"


def test_a_request_gets_the_default_tenant_only_when_it_names_none() -> None:
    anonymous = SyncRequest(service="payment-service")
    decided = anonymous.for_tenant("default-tenant")
    assert isinstance(decided, TenantRequest) and decided.tenant_id == "default-tenant"
    assert (decided.run_id, decided.service, decided.requested_at) == (
        anonymous.run_id,
        anonymous.service,
        anonymous.requested_at,
    )
    own = SyncRequest(service="payment-service", tenant_id="acme").for_tenant("default-tenant")
    assert own.tenant_id == "acme"
    # On the wire a decided request is the same JSON a person would publish.
    assert json.loads(decided.to_bytes()) == {**json.loads(anonymous.to_bytes()), "tenant_id": "default-tenant"}
