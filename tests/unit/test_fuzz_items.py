"""Record fuzzing: whatever a record holds, the fetcher's rules make it an item event or one dead letter with a
reason, and either one goes on the wire as valid UTF-8 JSON that reads back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ragsync.events import DeadLetter, ItemEvent
from ragsync.items import ItemError, ItemRules, record_text
from ragsync.messaging.dead_letters import encodable
from ragsync.schemas import Schemas, load_schema
from ragsync.streams.fetcher import encode_item
from tests.nasty_data import HUGE_NUMBERS, HUNDRED_KB, NASTY, any_text, deep_values, json_values, nested

EXAMPLES = 400
ITEM_MAX_BYTES = 1_000_000
SCHEMA = """service = "fuzz-service"
id_field = "ref.id"
tenant_field = "owner.tenant"
title_field = "title"
text_fields = ["body", "tags"]
deleted_field = "gone"
"""
ids = st.one_of(any_text, st.integers(), st.sampled_from([*HUGE_NUMBERS, True, None, [], {}, "", " \t\n"]))
records = st.dictionaries(
    st.one_of(st.sampled_from(["id", "title", "body", "tags", "gone", "deleted", "tenant_id"]), any_text),
    st.one_of(json_values, deep_values, st.just(HUNDRED_KB)),
    max_size=6,
)
# The schema'd service reads nested paths: records with the id, tenant and text where the schema looks.
schema_records = st.fixed_dictionaries(
    {},
    optional={
        "ref": st.one_of(st.fixed_dictionaries({"id": ids}), json_values),
        "owner": st.one_of(st.fixed_dictionaries({"tenant": ids}), json_values),
        "title": json_values,
        "body": st.one_of(json_values, deep_values),
        "tags": st.lists(any_text, max_size=3),
        "gone": json_values,
    },
)


def _rules(tmp: Path) -> ItemRules:
    (tmp / "fuzz-service.toml").write_text(SCHEMA, encoding="utf-8")
    assert load_schema(tmp / "fuzz-service.toml").tenant_field == "owner.tenant"
    return ItemRules(Schemas.load(tmp))


def _fetched(rules: ItemRules, record: dict[str, Any], service: str) -> tuple[ItemEvent, bytes] | DeadLetter:
    """What the fetcher makes of one record: an item event and its bytes, or the dead letter saying why not."""
    try:
        item = rules.read(record, service, "default-tenant")
        event = ItemEvent(
            run_id="run",
            tenant_id=item.tenant_id,
            service=service,
            item_id=item.item_id,
            op="delete" if item.deleted else "upsert",
            page=1,
            record=record,
        )
        return event, encode_item(event, ITEM_MAX_BYTES)
    except ItemError as error:
        letter = DeadLetter(
            run_id="run",
            tenant_id="default-tenant",
            service=service,
            stage="fetcher",
            reason=f"page 1: {error}",
            source_topic=f"coordinator:{service}",
            original=record_text(record),
        )
        return encodable(letter)


def _check_on_the_wire(rules: ItemRules, record: dict[str, Any], service: str) -> None:
    fetched = _fetched(rules, record, service)
    if isinstance(fetched, DeadLetter):
        data = fetched.to_bytes()
        assert DeadLetter.model_validate_json(data).reason == fetched.reason
        assert fetched.reason.startswith("page 1: ") and len(fetched.reason) > len("page 1: ")
        return
    event, data = fetched
    assert event.key.encode("utf-8")  # the Kafka key is UTF-8 too
    back = ItemEvent.model_validate_json(data)
    assert (back.item_id, back.tenant_id) == (event.item_id, event.tenant_id)
    assert back.item_id.strip() == back.item_id != ""
    text = rules.text(json.loads(data)["record"], service)
    text.encode("utf-8")  # what the embedder reads can be embedded (an empty text is its dead letter)


@given(records, ids)
@settings(max_examples=EXAMPLES, deadline=None)
@example({"id": "\ud800", "title": "x"}, None)
@example({"title": "x", "\ud800id": 1}, None)
@example({"body": nested(100, "deep")}, "deep")
@example({"body": HUNDRED_KB * 11}, "large")
@example({"n": float("nan"), "i": float("inf"), "big": 10**4000}, "numbers")
def test_any_generic_record_is_an_item_or_a_dead_letter(
    tmp_path_factory: Any, record: dict[str, Any], id_: Any
) -> None:
    rules = _rules(tmp_path_factory.mktemp("schemas"))
    if id_ is not None:
        record = {**record, "id": id_}
    _check_on_the_wire(rules, record, "some-service")


@given(schema_records)
@settings(max_examples=EXAMPLES, deadline=None)
@example({"ref": {"id": "a"}, "owner": {"tenant": "\ud800"}, "title": "x"})
@example({"ref": {"id": "a"}, "owner": {"tenant": "acme\n2026 ERROR forged"}, "body": list(NASTY)})
def test_any_schema_record_is_an_item_or_a_dead_letter(tmp_path_factory: Any, record: dict[str, Any]) -> None:
    _check_on_the_wire(_rules(tmp_path_factory.mktemp("schemas")), record, "fuzz-service")


def test_a_record_without_an_id_is_a_dead_letter_naming_the_field() -> None:
    # The properties above must be able to tell an item from a dead letter.
    fetched = _fetched(ItemRules(), {"title": "x"}, "some-service")
    assert isinstance(fetched, DeadLetter) and "has no id field" in fetched.reason
    assert not isinstance(_fetched(ItemRules(), {"id": 1, "title": "x"}, "some-service"), DeadLetter)


def test_an_id_with_a_lone_surrogate_is_a_bad_id_not_a_failed_run() -> None:
    record = json.loads('{"id": "a\\ud800", "title": "x"}')
    fetched = _fetched(ItemRules(), record, "some-service")
    assert isinstance(fetched, DeadLetter) and "lone UTF-16 surrogate" in fetched.reason
    assert "\ud800" not in fetched.reason and "\ufffd" in fetched.original
    fetched.to_bytes()


def test_a_tenant_with_a_lone_surrogate_is_a_dead_letter_not_the_default_tenant(tmp_path: Path) -> None:
    record = json.loads('{"ref": {"id": "a"}, "owner": {"tenant": "acme\\udc80"}, "title": "x"}')
    try:
        _rules(tmp_path).read(record, "fuzz-service", "default-tenant")
    except ItemError as error:
        assert error.kind == "bad tenant" and "owner.tenant" in str(error)
    else:
        raise AssertionError("a tenant that cannot be written was taken")


def test_a_record_the_embedder_could_not_read_is_too_deep_at_the_fetcher() -> None:
    kept, refused = {"id": 1, "n": nested(120, "x")}, {"id": 1, "n": nested(150, "x")}
    assert not isinstance(_fetched(ItemRules(), kept, "some-service"), DeadLetter)
    fetched = _fetched(ItemRules(), refused, "some-service")
    assert isinstance(fetched, DeadLetter) and "nests 152 levels deep, over the 128" in fetched.reason
