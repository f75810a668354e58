from pathlib import Path

import pytest

from ragsync.demo.records import GENERATORS, demo_record
from ragsync.errors import SetupError
from ragsync.items import ItemContent, ItemError, ItemRules, RecordItem
from ragsync.schemas import Schemas, load_schema, lookup


def test_every_demo_service_ships_a_valid_schema() -> None:
    schemas = Schemas.load(None)
    assert set(GENERATORS) <= set(schemas.services)
    rules = ItemRules(schemas)
    for service in GENERATORS:
        record = demo_record(service, 1)
        assert rules.item_id(record, service)
        assert rules.text(record, service).strip()


def test_schema_text_leads_with_the_title_and_uses_labels() -> None:
    rules = ItemRules(Schemas.load(None))
    record = demo_record("payment-service", 4)
    lines = rules.text(record, "payment-service").splitlines()
    assert lines[0] == record["description"]
    assert f"customer: {record['customer']['name']}" in lines


def test_payload_fields_limit_what_is_kept() -> None:
    rules = ItemRules(Schemas.load(None))
    payload = rules.payload(demo_record("devlab-service", 2), "devlab-service")
    assert set(payload) == {"exercise", "language", "author", "result", "runtime_ms", "updated_at"}


def test_lookup_follows_dots_and_lists() -> None:
    record = {"a": {"b": 1}, "qs": [{"q": "x"}, {"q": "y"}, {"other": 1}]}
    assert lookup(record, "a.b") == 1
    assert lookup(record, "qs.q") == ["x", "y"]
    assert lookup(record, "a.c") is None


def _folder_rules(folder: Path) -> ItemRules:
    """Rules with a payment-service schema of the folder's own: id, tenant and deletion in nested fields."""
    (folder / "payment-service.toml").write_text(
        'service = "payment-service"\nid_field = "ref.code"\ntext_fields = ["note"]\ntenant_field = "org"\n'
        'deleted_field = "gone"\n'
    )
    return ItemRules(Schemas.load(folder))


def test_folder_schema_replaces_the_built_in_one(tmp_path: Path) -> None:
    rules = _folder_rules(tmp_path)
    record = {"ref": {"code": "P-9"}, "note": "hello", "org": "acme", "gone": True}
    assert rules.item_id(record, "payment-service") == "P-9"
    assert rules.text(record, "payment-service") == "note: hello"
    assert rules.tenant(record, "payment-service", "default") == "acme"
    assert rules.is_deleted(record, "payment-service")
    with pytest.raises(ItemError, match=r"no ref\.code"):
        rules.item_id({"note": "x"}, "payment-service")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('service = "x-service"\nid_field = "id"\n', "text_fields="),
        ('service = "x-service"\nid_field = "id"\ntext_fields = ["a..b"]\n', "'a..b' is not a field path"),
        ('service = "x-service"\nid_field = "id"\ntext_fields = ["a"]\ncolour = "red"\n', "colour='red'"),
        ('service = "y-service"\nid_field = "id"\ntext_fields = ["a"]\n', "name it y-service.toml"),
        ("service = ", "not valid TOML"),
    ],
)
def test_a_bad_schema_is_a_start_up_error_naming_file_field_and_value(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "x-service.toml"
    path.write_text(text)
    with pytest.raises(SetupError) as raised:
        load_schema(path)
    assert str(path) in str(raised.value) and fragment in str(raised.value)


def test_generic_rule_detects_deletions() -> None:
    rules = ItemRules()
    assert rules.is_deleted({"id": 1, "deleted": True}, "s")
    assert rules.is_deleted({"id": 1, "deleted_at": "2026-01-01"}, "s")
    assert not rules.is_deleted({"id": 1, "deleted": False, "deleted_at": None}, "s")


def test_a_record_is_read_as_an_item_in_one_pass_by_its_schema(tmp_path: Path) -> None:
    rules = _folder_rules(tmp_path)
    record = {"ref": {"code": "P-9"}, "note": "hello", "org": "acme", "gone": True}
    assert rules.read(record, "payment-service", "default") == RecordItem("P-9", "acme", True)
    assert rules.content(record, "payment-service") == ItemContent("note: hello", record)  # no payload_fields
    assert rules.read({"course_id": 7}, "hidden-courses", "t") == RecordItem("7", "t", False)  # the generic rule
    with pytest.raises(ItemError, match=r"no ref\.code"):
        rules.read({"note": "x", "org": "acme"}, "payment-service", "default")
