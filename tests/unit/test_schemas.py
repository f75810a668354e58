from pathlib import Path

import pytest

from ragsync.demo.records import GENERATORS, demo_record
from ragsync.errors import SetupError
from ragsync.items import NO_ID, GenericSchema, ItemContent, ItemError, ItemRules, RecordItem
from ragsync.schemas import Schemas, ServiceSchema, load_schema, lookup


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


@pytest.mark.parametrize(
    ("record", "expected"),
    [({"t": ["x"]}, "x"), ({"t": ["x", "y"]}, ["x", "y"]), ({"t": []}, None), ({"t": None}, None), ({}, None)],
)
def test_lookup_of_a_top_level_field_unwraps_a_list_of_one(record: dict[str, object], expected: object) -> None:
    assert lookup(record, "t") == expected


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
    assert rules.read(record, "payment-service", "default") == RecordItem("P-9", "acme", True, names_tenant=True)
    orphan = {"ref": {"code": "P-9"}, "note": "hello", "org": " "}  # its tenant the run's for want of its own
    assert rules.read(orphan, "payment-service", "default") == RecordItem("P-9", "default", False, names_tenant=False)
    assert rules.content(record, "payment-service") == ItemContent("note: hello", record)  # no payload_fields
    assert rules.read({"course_id": 7}, "hidden-courses", "t") == RecordItem("7", "t", False)  # the generic rule
    with pytest.raises(ItemError, match=r"no ref\.code"):
        rules.read({"note": "x", "org": "acme"}, "payment-service", "default")


def _schema(**fields: object) -> ServiceSchema:
    return ServiceSchema.model_validate({"service": "s", "id_field": "ref.code", "text_fields": ["note"], **fields})


def test_a_schema_answers_the_id_from_its_id_field() -> None:
    assert _schema().item_id({"ref": {"code": 7}}) == "7"
    with pytest.raises(ItemError, match=r"s record has no ref\.code \(its schema's id_field\)") as raised:
        _schema().item_id({"code": 7})
    assert raised.value.kind == NO_ID


def test_a_schema_answers_the_tenant_a_record_names_else_the_default() -> None:
    schema = _schema(tenant_field="org")
    assert schema.names_tenants and not _schema().names_tenants
    assert schema.tenant({"org": "acme"}, "d") == "acme"
    assert schema.tenant({"org": 3}, "d") == "3"
    assert schema.tenant({"org": " "}, "d") == schema.tenant({}, "d") == _schema().tenant({"org": "acme"}, "d") == "d"
    with pytest.raises(ItemError) as raised:
        schema.tenant({"org": "a\ud800"}, "d")
    assert str(raised.value) == "s record field org='a\\ud800' holds a lone UTF-16 surrogate"
    assert raised.value.kind == "bad tenant"


def test_a_schema_answers_deletion_by_its_deleted_field_else_the_generic_rule() -> None:
    schema = _schema(deleted_field="gone")
    assert schema.deleted({"gone": 1}) and not schema.deleted({"gone": 0, "deleted": True})
    assert _schema().deleted({"deleted": True}) and not _schema().deleted({"gone": 1})


def test_a_schema_answers_the_text_title_first_then_labelled_fields() -> None:
    schema = _schema(title_field="title", text_fields=["note", "tags"], labels={"tags": "tag"})
    assert schema.text({"title": "T", "note": "n", "tags": ["a", None, "b"]}) == "T\nnote: n\ntag: a, b"
    assert schema.text({"title": "", "note": {"k": "v"}, "tags": []}) == 'note: {"k": "v"}'


def test_a_schema_answers_the_payload_its_fields_or_the_whole_record() -> None:
    record = {"a": 2**70, "b": {"c": 1}}
    assert _schema(payload_fields=["b.c"]).payload(record) == {"b.c": 1}
    assert _schema().payload(record) == {"a": str(2**70), "b": {"c": 1}}


def test_a_service_without_a_schema_gets_the_generic_one() -> None:
    schema = Schemas.load(None).get("hidden-courses")
    assert isinstance(schema, GenericSchema) and schema is ItemRules().schema("hidden-courses")
    assert isinstance(Schemas.load(None).get("payment-service"), ServiceSchema)
    record = {"course_id": 7, "title": "T", "updated_at": "2026", "deleted_at": "2026", "big": 2**70}
    assert schema.item_id(record) == "7"
    assert schema.tenant({"tenant_id": "other"}, "d") == "d" and not schema.names_tenants
    assert schema.deleted(record) and not schema.deleted({"deleted": "yes"})
    assert schema.text(record) == f"title: T\nbig: {2**70}"
    assert schema.payload(record)["big"] == str(2**70)
    with pytest.raises(ItemError, match="looked for id, _id") as raised:
        schema.item_id({"title": "T"})
    assert raised.value.kind == NO_ID
