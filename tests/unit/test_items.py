import pytest

from streams.items import ItemError, item_id_of, item_text


@pytest.mark.parametrize(
    ("record", "expected"),
    [({"id": 7}, "7"), ({"_id": "abc"}, "abc"), ({"payment_id": "p-1"}, "p-1"), ({"id": " x "}, "x")],
)
def test_item_id(record: dict[str, object], expected: str) -> None:
    assert item_id_of(record, "payment-service") == expected


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ({"name": "no id"}, "has no id field"),
        ({"id": None}, "id=None is not a string or integer"),
        ({"id": True}, "id=True"),
        ({"id": 1.5}, "id=1.5"),
        ({"id": ""}, "field id is empty"),
    ],
)
def test_bad_item_id_names_field_and_value(record: dict[str, object], fragment: str) -> None:
    with pytest.raises(ItemError, match="payment-service") as raised:
        item_id_of(record, "payment-service")
    assert fragment in str(raised.value)


def test_text_has_leaves_without_ids_or_timestamps() -> None:
    record = {
        "id": 1,
        "title": "Intro",
        "customer": {"name": "Dana", "country": None},
        "tags": ["a", "b"],
        "tenant_id": "t",
        "updated_at": "2026",
        "empty": "",
        "paid": True,
    }
    assert item_text(record, "x-service") == "title: Intro\ncustomer.name: Dana\ntags: a\ntags: b"


def test_text_of_unicode_record() -> None:
    assert item_text({"id": 1, "note": "שלום κόσμε 👋"}, "s") == "note: שלום κόσμε 👋"
