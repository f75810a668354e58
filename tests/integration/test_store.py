"""Every store backend, real: qdrant-edge on disk (the embedded default), qdrant-client's in-memory mode (the
code path of a Qdrant server) and qdrant-client's on-disk local mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ragsync.app import options
from ragsync.settings import Settings
from ragsync.store import Point, StoreError, VectorStore, open_store, point_id
from ragsync.store.client_store import ClientStore
from ragsync.store.edge_store import EdgeStore

BACKENDS: dict[str, Callable[[Path], VectorStore]] = {
    "edge": lambda path: EdgeStore.open(path, "c"),
    "memory": lambda path: ClientStore.memory("c"),
    "local": lambda path: ClientStore.local(path, "c"),
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    """One store of each backend, closed afterwards."""
    opened = BACKENDS[request.param](tmp_path / "q")
    yield opened
    opened.close()


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


def test_point_ids_stay_the_uuid5_ids_stores_already_hold() -> None:
    """Every point written so far has the id uuid.uuid5 gave it: a faster spelling must give the same ones."""
    import json
    import uuid

    from ragsync.store.base import POINT_NAMESPACE

    names = [("t", "s", "1", 0), ("tenant-0", "payment-service", "pay_000123", 3), ("ü", "服务", 'id/with\\odd"', 7)]
    names += [(f"t{n}", "s", str(n * 7919), n % 5) for n in range(500)]
    for name in names:
        assert point_id(*name) == str(uuid.uuid5(POINT_NAMESPACE, json.dumps(list(name)))), name


def test_upsert_twice_overwrites_and_filters_by_tenant(store: VectorStore) -> None:
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
    assert store.retrieve_ids([points[0].id, point_id("acme", "s", "missing")]) == {points[0].id}


def test_stored_returns_the_hash_and_chunks_of_existing_points_only(store: VectorStore) -> None:
    store.ensure_collection(3, "m")
    payload = {"tenant_id": "t", "service": "s", "item_id": "1", "content_hash": "abc", "chunks": 2, "text": "x"}
    store.upsert([Point(point_id("t", "s", "1"), [1, 0, 0], payload)])
    found = store.stored([point_id("t", "s", "1"), point_id("t", "s", "2")])
    assert found == {point_id("t", "s", "1"): {"content_hash": "abc", "chunks": 2}}


def test_delete_item_removes_all_chunks_or_only_the_extra_ones(store: VectorStore) -> None:
    store.ensure_collection(3, "m")
    store.upsert(
        [
            Point(
                point_id("t", "s", item, chunk),
                [1, 0, 0],
                {"tenant_id": "t", "service": "s", "item_id": item, "chunk": chunk},
            )
            for item in ("a", "b")
            for chunk in range(4)
        ]
    )
    store.delete_item("t", "s", "a", from_chunk=2)
    assert store.count() == 6
    store.delete_item("t", "s", "b")
    assert store.count() == 2
    assert store.retrieve_ids([point_id("t", "s", "a", c) for c in range(4)]) == {
        point_id("t", "s", "a", 0),
        point_id("t", "s", "a", 1),
    }


def test_a_new_model_writes_a_new_collection_and_searches_see_the_old_until_the_switch(store: VectorStore) -> None:
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


def test_a_plain_collection_under_the_alias_name_is_a_clear_error(store: VectorStore) -> None:
    store._create("c", 3)
    with pytest.raises(StoreError, match="'c' is a plain collection, not an alias"):
        store.ensure_collection(3, "model-a")


def _layout(tenant: str, service: str, item: str, generation: str | None, touched_at: float | None) -> Point:
    """A point as the embedder writes it; None leaves the field out, as versions before generations did."""
    payload: dict[str, object] = {"tenant_id": tenant, "service": service, "item_id": item}
    if generation is not None:
        payload["generation"] = generation
    if touched_at is not None:
        payload["touched_at"] = touched_at
    return Point(point_id(tenant, service, item), [1, 0, 0], payload)


def test_sweep_deletes_only_what_the_run_neither_wrote_nor_touched_before_it(store: VectorStore) -> None:
    # Run "B" started at 200.0; run "A" before it, run "C" after it.
    store.ensure_collection(3, "m")
    kept = {
        "written by B": ("B", 250.0),
        "written by B, clock behind": ("B", 150.0),  # B's own point, whatever its time: not stale
        "touched by B": ("A", 100.0),  # touched below, so B's
        "written by C": ("C", 300.0),  # a later run's point, not B's: kept by the time alone
        "at the bound": ("A", 200.0),  # not before 200.0
        "no generation, later": (None, 300.0),
    }
    stale = {
        "written by A": ("A", 100.0),
        "older layout": (None, None),
        "generation but no time": ("A", None),
        "time but no generation": (None, 100.0),
        "just before": ("A", 199.5),
    }
    store.upsert([_layout("t", "s", item, *fields) for item, fields in (kept | stale).items()])
    elsewhere = [_layout("u", "s", "written by A", "A", 100.0), _layout("t", "other", "written by A", "A", 100.0)]
    store.upsert(elsewhere)
    store.touch([point_id("t", "s", "touched by B")], "B", 260.0)

    assert store.sweep("t", "s", generation="B", before=200.0) == len(stale)

    every = [point_id("t", "s", item) for item in kept | stale] + [p.id for p in elsewhere]
    assert store.retrieve_ids(every) == {point_id("t", "s", item) for item in kept} | {p.id for p in elsewhere}
    assert store.sweep("t", "s", generation="B", before=200.0) == 0


def test_touch_sets_the_generation_and_time_of_the_given_points_only(store: VectorStore) -> None:
    store.ensure_collection(3, "m")
    store.upsert([_layout("t", "s", item, "A", 100.0) for item in ("a", "b")] + [_layout("t", "s", "c", None, None)])
    store.touch([point_id("t", "s", "a"), point_id("t", "s", "c")], "B", 250.5)
    found = store._retrieve(
        store.target, [point_id("t", "s", i) for i in "abc"], ["generation", "touched_at", "item_id"]
    )
    assert sorted((r.payload["item_id"], r.payload.get("generation"), r.payload.get("touched_at")) for r in found) == [
        ("a", "B", 250.5),
        ("b", "A", 100.0),
        ("c", "B", 250.5),
    ]


def test_touch_of_a_point_that_is_gone_raises_and_of_nothing_does_nothing(store: VectorStore) -> None:
    store.touch([], "B", 1.0)  # before any collection exists: no call reaches the store
    store.ensure_collection(3, "m")
    store.upsert([_layout("t", "s", "a", "A", 100.0)])
    gone = point_id("t", "s", "gone")
    # The embedder then retries its batch, finds the point missing and writes it again.
    with pytest.raises(Exception, match=gone):
        store.touch([point_id("t", "s", "a"), gone], "B", 250.0)
    assert store.retrieve_ids([gone]) == set()


def test_sweep_deletes_page_after_page(store: VectorStore) -> None:
    # 2,500 stale points (2.5 pages) among 700 the run touched, interleaved by their random-looking ids.
    store.ensure_collection(3, "m")
    store.upsert([_layout("t", "s", f"stale {i}", "A", 100.0) for i in range(2500)])
    store.upsert([_layout("t", "s", f"seen {i}", "B", 250.0) for i in range(700)])
    assert store.sweep("t", "s", generation="B", before=200.0) == 2500
    assert store.count() == 700
    assert store.count(tenant_id="t", service="s") == 700


def test_the_edge_store_indexes_the_generation_and_counts_a_touch_as_a_write(tmp_path: Path) -> None:
    import qdrant_edge

    store = EdgeStore.open(tmp_path / "q", "c")
    try:
        store.ensure_collection(3, "m")
        store.upsert([_layout("t", "s", "a", "A", 100.0)])
        schema = store._shard(store.target).info().payload_schema
        assert schema["generation"].data_type == qdrant_edge.PayloadSchemaType.Keyword
        assert schema["touched_at"].data_type == qdrant_edge.PayloadSchemaType.Float
        assert store.optimize() is True and store.optimize() is False
        store.touch([point_id("t", "s", "a")], "B", 250.0)
        assert store.optimize() is True  # the touch changed the collection since its index was built
        assert store.optimize() is False
        assert store.sweep("t", "s", generation="C", before=300.0) == 1
        assert store.optimize() is True
    finally:
        store.close()


def test_a_collection_of_an_earlier_release_gains_the_payload_indexes_added_since(tmp_path: Path) -> None:
    import qdrant_edge

    store = EdgeStore.open(tmp_path / "q", "c")
    try:
        store.ensure_collection(3, "m")
        store._apply(store.target, qdrant_edge.UpdateOperation.delete_field_index("related_ids"))  # as it was made
        assert "related_ids" not in store._shard(store.target).info().payload_schema
        store.ensure_collection(3, "m")  # a start of this release
        schema = store._shard(store.target).info().payload_schema
        assert schema["related_ids"].data_type == qdrant_edge.PayloadSchemaType.Keyword
    finally:
        store.close()


def test_the_related_content_primitives_read_and_write_the_collection_being_written(store: VectorStore) -> None:
    store.ensure_collection(3, "m")
    a, b, other = (
        _point("t", "s", "a", [1.0, 0.0, 0.0]),
        _point("t", "s", "b", [0.8, 0.6, 0.0]),
        _point("u", "s", "a", [1.0, 0.0, 0.0]),
    )
    store.upsert([a, b, other])
    found = store.points([a.id, point_id("t", "s", "missing")], ["item_id"], vectors=True)
    assert list(found) == [a.id] and found[a.id].payload == {"item_id": "a"}
    assert found[a.id].vector == pytest.approx([1.0, 0.0, 0.0])
    nearest = store.nearest([1.0, 0.0, 0.0], 5, "t", ["item_id"])
    assert [(hit.id, hit.payload) for hit in nearest] == [(a.id, {"item_id": "a"}), (b.id, {"item_id": "b"})]
    assert nearest[1].score == pytest.approx(0.8)
    store.set_payloads({a.id: {"related_ids": [b.id]}, b.id: {"related_ids": [a.id, other.id]}})
    assert [r.id for r in store.pointing_at("t", "related_ids", b.id, [])] == [a.id]
    assert {r.id for r in store.pointing_at("t", "related_ids", a.id, ["item_id"])} == {b.id}
    assert store.pointing_at("u", "related_ids", a.id, []) == []  # the tenant narrows it
    assert store.points([b.id], ["run_id"])[b.id].payload == {"run_id": "r1"}  # the other fields stay


@pytest.mark.parametrize("backend", ["edge", "local"])
def test_points_and_the_alias_survive_a_reopen(backend: str, tmp_path: Path) -> None:
    first = BACKENDS[backend](tmp_path / "q")
    first.ensure_collection(3, "m")
    first.upsert([_point("t", "s", str(i), [1, i, 0]) for i in range(40)])
    first.optimize()  # the edge store builds the index in a child process and reopens the shard after it
    first.upsert([_point("t", "s", str(i), [1, i, 0]) for i in range(40, 50)])
    assert first.count() == 50 and first.search([1, 45, 0], 1)[0].payload["item_id"] == "45"
    live = first.live_collection()
    first.close()
    again = BACKENDS[backend](tmp_path / "q")
    try:
        assert again.live_collection() == live and again.count() == 50
        assert again.search([1, 0, 0], 1)[0].payload["item_id"] == "0"
    finally:
        again.close()


@pytest.mark.parametrize("backend", ["edge", "local"])
def test_a_second_opener_of_the_folder_gets_a_clear_error(backend: str, tmp_path: Path) -> None:
    first = BACKENDS[backend](tmp_path / "q")
    try:
        with pytest.raises(StoreError, match="Only one process may use a store folder"):
            BACKENDS[backend](tmp_path / "q")
    finally:
        first.close()
    BACKENDS[backend](tmp_path / "q").close()  # free again once the owner closed it


def test_the_edge_store_refuses_a_folder_of_the_local_mode_and_says_what_to_do(tmp_path: Path) -> None:
    ClientStore.local(tmp_path / "q", "c").close()
    with pytest.raises(StoreError, match="set QDRANT_EMBEDDED=local to keep using it"):
        EdgeStore.open(tmp_path / "q", "c")


def test_a_collection_name_that_cannot_be_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"QDRANT_COLLECTION='\.\./x' cannot name a folder"):
        EdgeStore.open(tmp_path / "q", "../x")


def test_open_store_follows_the_settings(tmp_path: Path) -> None:
    for embedded, kind in (("edge", EdgeStore), ("local", ClientStore)):
        settings = Settings(qdrant_path=tmp_path / embedded, qdrant_embedded=embedded, _env_file=None)
        opened = open_store(options.store(settings))
        assert type(opened) is kind
        opened.close()


CRASHING_WRITER = """
import os, signal, sys
from pathlib import Path
from ragsync.store import Point, point_id
from ragsync.store.edge_store import EdgeStore

store = EdgeStore.open(Path(sys.argv[1]), "c")
store.ensure_collection(4, "m")
for batch in range(3):
    ids = [point_id("t", "s", f"{batch}-{i}") for i in range(100)]
    store.upsert([Point(id, [1.0, 0.0, 0.0, float(n)], {"tenant_id": "t"}) for n, id in enumerate(ids)])
store.touch([point_id("t", "s", "0-0")], "run-2", 2.0)
os.kill(os.getpid(), signal.SIGKILL)  # no flush, no close: what a crash leaves
"""


def test_every_write_acknowledged_by_the_embedded_store_survives_its_process_being_killed(tmp_path: Path) -> None:
    """The embedder commits a batch once the store returns: whatever the store returned for must outlive a crash,
    though its segments are flushed only every few seconds."""
    import subprocess
    import sys

    folder = tmp_path / "q"
    child = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(folder)], capture_output=True, text=True)
    assert child.returncode == -9, child.stderr
    reopened = EdgeStore.open(folder, "c")
    try:
        reopened.ensure_collection(4, "m")
        assert reopened.count() == 300
        touched = [hit for hit in reopened.search([1.0, 0.0, 0.0, 0.0], 300) if hit.payload.get("generation")]
        assert [hit.payload["generation"] for hit in touched] == ["run-2"]
    finally:
        reopened.close()
