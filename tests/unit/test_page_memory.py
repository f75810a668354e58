"""The page limit against the fetcher's memory: FETCHER_CONCURRENCY pages in flight, parsed, fit its pod's limit."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest
import yaml

from ragsync.coordinator.envelope import records_from_envelope
from ragsync.coordinator.paging import _digest
from ragsync.demo.coordinator_server import DemoCoordinator
from ragsync.settings import DEFAULT_SERVICES, Settings

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
PARSED_PER_BYTE = 4.0  # README: parsed records and the page's digest, per byte of JSON (measured 2.7-3.6)
# README: the rest of a page in flight, per byte: the answer (1), its text (1), the item events it becomes (1.5),
# and room for the allocator (0.5).
PAGE_COST = PARSED_PER_BYTE + 4.0
IDLE_FETCHER = 128 * MIB  # README: the fetcher's own memory, idle (measured 103 MiB of RSS)


def _pod_limit() -> int:
    [deployment] = [d for d in yaml.safe_load_all((ROOT / "k8s/base/fetcher.yaml").read_text()) if d]
    limit = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert limit.endswith("Mi"), limit
    return int(limit.removesuffix("Mi")) * MIB


@pytest.mark.parametrize("service", DEFAULT_SERVICES)
def test_a_parsed_page_and_its_digest_take_at_most_the_assumed_bytes_per_byte_of_json(service: str) -> None:
    envelope = DemoCoordinator(1000)._page(service, 1, 1000, None).envelope_json
    gc.collect()
    tracemalloc.start()
    try:
        records = records_from_envelope(envelope, service, 1)
        _digest(records)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(records) == 1000
    assert peak / len(envelope.encode()) <= PARSED_PER_BYTE


def test_the_default_page_limit_lets_every_page_in_flight_fit_the_fetchers_memory_limit() -> None:
    settings = Settings(_env_file=None)
    in_flight = settings.fetcher_concurrency * settings.coordinator_max_message_bytes * PAGE_COST
    assert IDLE_FETCHER + in_flight <= _pod_limit(), f"{(IDLE_FETCHER + in_flight) / MIB:.0f} MiB"
