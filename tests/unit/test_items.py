import pytest

from ragsync.items import ItemError, item_id_of, item_text


@pytest.mark.parametrize(
    ("record", "expected"),
    [({"id": 7}, "7"), ({"_id": "abc"}, "abc"), ({"payment_id": "p-1"}, "p-1"), ({"id": " x "}, "x")],
)
def test_item_id(record: dict[str, object], expected: str) -> None:
    assert item_id_of(record, "payment-service") == expected


@pytest.mark.parametrize(
    ("service", "record", "expected"),
    [
        ("hidden-courses", {"course_id": "c-1", "title": "x"}, "c-1"),
        ("hidden-courses", {"courseId": 9}, "9"),
        ("payment-service", {"paymentId": "p-2"}, "p-2"),
        ("knowledge-base-service", {"knowledge_base_id": "k", "base_id": "b"}, "k"),
        ("product-categories", {"category_id": "toys"}, "toys"),
        ("any", {"key": "k-1", "id_ish": "no"}, "k-1"),
    ],
)
def test_the_generic_rule_finds_the_id_a_person_would(service: str, record: dict[str, object], expected: str) -> None:
    assert item_id_of(record, service) == expected


def test_a_record_without_an_id_names_the_fields_that_look_like_one_and_the_schema_to_add() -> None:
    with pytest.raises(ItemError) as raised:
        item_id_of({"title": "x", "courseRef": "c", "external_uuid": "u"}, "hidden-courses")
    message = str(raised.value)
    assert "looked for id, _id, uuid, item_id, key, hidden_courses_id, hiddenCoursesId, course_id, courseId" in message
    assert "fields that look like ids: courseRef, external_uuid; " in message
    assert 'add SCHEMAS_DIR/hidden-courses.toml with id_field = "courseRef"' in message
    assert raised.value.kind == "no id field"
    with pytest.raises(ItemError) as nothing:
        item_id_of({"title": "x"}, "s")
    assert "no field looks like an id: add SCHEMAS_DIR/s.toml with id_field naming it" in str(nothing.value)


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
