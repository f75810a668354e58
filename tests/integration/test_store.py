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
        store.ensure_collection(3, "model-a")
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


def test_a_new_model_writes_a_new_collection_and_searches_see_the_old_until_the_switch(tmp_path: Path) -> None:
    store = VectorStore.on_disk(tmp_path / "q", "c")
    try:
        assert store.ensure_collection(3, "model-a") is False
        store.upsert([_point("t", "s", "1", [1, 0, 0])])
        old = store.live_collection()
        assert store.ensure_collection(4, "model-b") is True
        store.upsert([Point(point_id("t", "s", "1"), [0, 1, 0, 0], {"tenant_id": "t", "service": "s"})])
        assert store.live_collection() == old and store.count() == 1
        assert len(store.search([1, 0, 0], 5)) == 1
        store.switch_alias()
        assert store.live_collection() == store.target != old
        assert len(store.search([0, 1, 0, 0], 5)) == 1
    finally:
        store.close()


def test_a_plain_collection_under_the_alias_name_is_a_clear_error(tmp_path: Path) -> None:
    from qdrant_client import models

    store = VectorStore.on_disk(tmp_path / "q", "c")
    try:
        store._client.create_collection(
            "c", vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE)
        )
        with pytest.raises(StoreError, match="'c' is a plain collection, not an alias"):
            store.ensure_collection(3, "model-a")
    finally:
        store.close()


def test_prune_deletes_only_unseen_items_written_before_the_run(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    store = VectorStore.on_disk(tmp_path / "q", "c")
    try:
        store.ensure_collection(3, "m")
        old, new = "2026-01-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"
        store.upsert(
            [
                Point(
                    point_id("t", "s", item),
                    [1, 0, 0],
                    {"tenant_id": "t", "service": "s", "item_id": item, "synced_at": at},
                )
                for item, at in (("seen", old), ("gone", old), ("later", new))
            ]
            + [
                Point(
                    point_id("u", "s", "gone"),
                    [1, 0, 0],
                    {"tenant_id": "u", "service": "s", "item_id": "gone", "synced_at": old},
                )
            ]
        )
        removed = store.prune("t", "s", keep={"seen"}, before=datetime(2026, 2, 1, tzinfo=UTC))
        assert removed == 1
        assert store.count(tenant_id="t") == 2 and store.count(tenant_id="u") == 1
    finally:
        store.close()


def test_a_second_opener_of_the_folder_gets_a_clear_error(tmp_path: Path) -> None:
    first = VectorStore.on_disk(tmp_path / "q", "c")
    try:
        with pytest.raises(StoreError, match="Only one process may use a store folder"):
            VectorStore.on_disk(tmp_path / "q", "c")
    finally:
        first.close()
