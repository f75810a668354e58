"""The store against a real embedded Qdrant on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragsync.store import Point, StoreError, VectorStore, point_id


def _point(tenant: str, service: str, item: str, vector: list[float]) -> Point:
    return Point(
        point_id(tenant, service, item),
        vector,
        {"tenant_id": tenant, "service": service, "item_id": item, "run_id": "r1"},
    )


def test_point_ids_are_deterministic_and_distinct() -> None:
    assert point_id("t", "s", "1") == point_id("t", "s", "1")
    ids = {point_id("t", "s", "1"), point_id("t", "s", "2"), point_id("u", "s", "1"), point_id("t", "s", "1", 1)}
    assert len(ids) == 4
    # No separator ambiguity: "a/b" + "c" is not "a" + "b/c".
    assert point_id("a/b", "c", "d") != point_id("a", "b/c", "d")


def test_upsert_twice_overwrites_and_filters_by_tenant(tmp_path: Path) -> None:
    store = VectorStore.on_disk(tmp_path / "q", "c")
    try:
        store.ensure_collection(3)
        points = [
            _point("acme", "s", "1", [1, 0, 0]),
            _point("acme", "s", "2", [0, 1, 0]),
            _point("other", "s", "1", [1, 0, 0]),
        ]
        store.upsert(points)
        store.upsert(points)
        assert store.count() == 3
        assert store.count(tenant_id="acme") == 2
        assert store.count(run_id="r1") == 3
        hits = store.search([1, 0, 0], limit=5, tenant_id="acme")
        assert [h.payload["tenant_id"] for h in hits] == ["acme", "acme"]
        assert hits[0].payload["item_id"] == "1" and hits[0].score == pytest.approx(1.0)
    finally:
        store.close()


def test_dimension_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    store = VectorStore.on_disk(tmp_path / "q", "c")
    try:
        store.ensure_collection(3)
        with pytest.raises(StoreError, match="holds 3-dimension vectors but the model makes 384"):
            store.ensure_collection(384)
    finally:
        store.close()


def test_a_second_opener_of_the_folder_gets_a_clear_error(tmp_path: Path) -> None:
    first = VectorStore.on_disk(tmp_path / "q", "c")
    try:
        with pytest.raises(StoreError, match="Only one process may use a store folder"):
            VectorStore.on_disk(tmp_path / "q", "c")
    finally:
        first.close()
