from typing import Literal, get_args, get_origin

import pytest
from pydantic import ValidationError

from ragsync.settings import DEFAULT_SERVICES, Settings, describe_invalid


def test_defaults_match_the_existing_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)
    assert settings.batch_sync_enabled is True
    assert settings.batch_sync_schedule == "0 2 * * *"
    assert settings.batch_sync_timezone == "UTC"
    assert settings.batch_sync_on_startup is False
    assert settings.batch_sync_limit == 1000
    assert settings.batch_sync_services == DEFAULT_SERVICES
    assert settings.batch_sync_timeout == 300
    assert settings.coordinator_grpc_endpoint == "localhost:50051"
    assert settings.default_tenant_id == "default-tenant"
    assert settings.rag_private_key is None


def test_environment_names_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_SYNC_SERVICES", "payment-service, labs-service")
    monkeypatch.setenv("BATCH_SYNC_ON_STARTUP", "true")
    monkeypatch.setenv("BATCH_SYNC_LIMIT", "250")
    monkeypatch.setenv("COORDINATOR_GRPC_ENDPOINT", "coordinator:6000")
    monkeypatch.setenv("DEFAULT_TENANT_ID", "acme")
    settings = Settings(_env_file=None)
    assert settings.batch_sync_services == ["payment-service", "labs-service"]
    assert settings.batch_sync_on_startup is True
    assert settings.batch_sync_limit == 250
    assert settings.coordinator_grpc_endpoint == "coordinator:6000"
    assert settings.default_tenant_id == "acme"


def test_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_SYNC_LIMIT", "lots")
    with pytest.raises(ValueError, match="batch_sync_limit"):
        Settings(_env_file=None)


def test_empty_service_list_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_SYNC_SERVICES", " , ")
    with pytest.raises(ValueError, match="BATCH_SYNC_SERVICES"):
        Settings(_env_file=None)


def _fixed_values(annotation: object) -> tuple[str, ...]:
    """The values a setting's type allows when it is a fixed set (a Literal, or an optional one), else ()."""
    if get_origin(annotation) is Literal:
        return tuple(str(value) for value in get_args(annotation))
    return next((_fixed_values(arg) for arg in get_args(annotation) if get_origin(arg) is Literal), ())


FIXED = {name: values for name, field in Settings.model_fields.items() if (values := _fixed_values(field.annotation))}


def test_every_setting_with_a_fixed_set_of_values_is_checked_against_it() -> None:
    # The settings known to take one of a few words; a new one should be a Literal too, and join this list.
    assert {"kafka_security_protocol", "kafka_sasl_mechanism", "embedding_backend", "qdrant_embedded"} <= set(FIXED)


@pytest.mark.parametrize("name", sorted(FIXED))
def test_a_value_outside_a_fixed_set_is_one_line_naming_the_setting_and_each_accepted_value(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name.upper(), "not-one-of-them")
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    said = describe_invalid(raised.value)
    assert "\n" not in said and said.startswith(f"{name.upper()}='not-one-of-them': ")
    assert all(f"'{value}'" in said for value in FIXED[name]), said


def test_a_switch_that_is_neither_on_nor_off_says_what_it_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELATED_EDGES", "maybe")
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    assert describe_invalid(raised.value) == (
        "RELATED_EDGES='maybe': Input should be a valid boolean, unable to interpret input; use true or false "
        "(also on/off, yes/no, 1/0)"
    )


def test_the_batch_size_histogram_reaches_the_largest_batch_a_setting_allows() -> None:
    from annotated_types import Le

    from ragsync.operations.metrics import EMBED_BATCH_BUCKETS

    [bound] = [m.le for m in Settings.model_fields["embedder_max_batch"].metadata if isinstance(m, Le)]
    assert max(EMBED_BATCH_BUCKETS) >= bound and Settings(_env_file=None).embedder_max_batch in EMBED_BATCH_BUCKETS


@pytest.mark.parametrize(
    ("given", "meant"),
    [("auto", "auto"), ("on", "on"), ("true", "on"), ("1", "on"), ("False", "off"), ("off", "off"), ("no", "off")],
)
def test_embedding_process_is_auto_by_default_and_keeps_its_old_switch_spellings(
    monkeypatch: pytest.MonkeyPatch, given: str, meant: str
) -> None:
    assert Settings(_env_file=None).embedding_process == "auto"
    monkeypatch.setenv("EMBEDDING_PROCESS", given)
    assert Settings(_env_file=None).embedding_process == meant


def test_a_bad_embedding_process_names_the_setting_and_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_PROCESS", "sometimes")
    with pytest.raises(ValidationError, match=r"embedding_process[\s\S]*sometimes"):
        Settings(_env_file=None)
