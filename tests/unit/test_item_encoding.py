import json

import pytest

from ragsync.coordinator.coordinator_errors import BadPageError
from ragsync.coordinator.envelope import records_from_envelope
from ragsync.events import ItemEvent
from ragsync.items import ItemError, depth_of, item_text, record_text, repair_surrogates
from ragsync.streams.fetcher import encode_item


def _item(record: dict[str, object]) -> ItemEvent:
    return ItemEvent(run_id="r", tenant_id="t", service="s", item_id="1", page=1, record=record)


def _nested(depth: int) -> dict[str, object]:
    record: dict[str, object] = {"leaf": "x"}
    for _ in range(depth - 1):
        record = {"a": record}
    return record


def test_depth() -> None:
    assert depth_of("x") == 1
    assert depth_of({"a": [1, {"b": 2}]}) == 4
    assert depth_of(_nested(5000)) == 5001  # 5000 objects and the leaf; no recursion limit


def test_lone_surrogates_are_repaired_and_the_item_kept() -> None:
    record = json.loads('{"id": 1, "note": "caf\\ud800e", "tags": ["\\udfff"]}')
    data = encode_item(_item(record), 1_000_000)
    assert json.loads(data)["record"] == {"id": 1, "note": "caf\ufffde", "tags": ["\ufffd"]}
    assert repair_surrogates({"k": "ok"}) == {"k": "ok"}


def test_too_deep_a_record_is_an_item_error() -> None:
    with pytest.raises(ItemError, match="levels deep"):
        encode_item(_item({"id": 1, "n": _nested(400)}), 1_000_000)
    assert encode_item(_item({"id": 1, "n": _nested(100)}), 1_000_000)  # deep, but encodable: kept


def test_too_large_a_record_is_an_item_error_naming_the_limit() -> None:
    with pytest.raises(ItemError, match=r"over ITEM_MAX_BYTES=1,000,000"):
        encode_item(_item({"id": 1, "text": "x" * 5_000_000}), 1_000_000)


def test_record_text_is_bounded() -> None:
    text = record_text({"text": "y" * 100_000})
    assert len(text) < 66_000 and text.endswith("characters]")
    assert "leaf" not in record_text(_nested(3000))  # too deep for JSON: a shortened repr instead


def test_item_text_survives_deep_nesting() -> None:
    assert item_text({"id": 1, "n": _nested(200)}, "s").startswith("n.a.a")


def test_unparseably_deep_envelope_is_a_bad_page() -> None:
    with pytest.raises(BadPageError, match="nested too deeply"):
        records_from_envelope("[" * 100_000 + "]" * 100_000, "s", 4)
