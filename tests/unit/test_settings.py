import pytest

from ragsync.settings import DEFAULT_SERVICES, Settings


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
