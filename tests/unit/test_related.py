"""Related-content edges as logic: which hits become edges, how an offered edge merges into a list, and the
stage over the in-memory store with the hashing encoder (texts sharing words are near). No broker, no model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ragsync.store import Hit, point_id
from ragsync.store.related_edges import (
    RELATED_HASH,
    RELATED_IDS,
    Edge,
    RelatedRules,
    best_edges,
    read_related,
    with_edge,
)
from ragsync.streams.related import RelatedEdges
from tests.unit.doubles import EmbeddingStage

RULES = RelatedRules(top_k=2, min_score=0.5)


def _hit(score: float, item_id: str, tenant: str = "acme", service: str = "s") -> Hit:
    return Hit(score, {"tenant_id": tenant, "service": service, "item_id": item_id})


def test_each_other_item_of_the_tenant_counts_once_by_its_best_chunk_above_the_score() -> None:
    hits = [
        _hit(1.0, "self"),
        _hit(0.97, "twin", tenant="globex"),  # another tenant's copy: never an edge
        _hit(0.9, "a"),
        _hit(0.85, "a"),  # a second chunk of a
        _hit(0.8, "self", service="other"),  # the same id in another service is another item
        _hit(0.7, "b"),
        _hit(0.4, "c"),
    ]
    edges = best_edges("acme", "s", "self", hits, RelatedRules(top_k=5, min_score=0.5))
    expected = [("s", "a", 0.9), ("other", "self", 0.8), ("s", "b", 0.7)]
    assert [(e.service, e.item_id, e.score) for e in edges] == expected
    assert [e.item_id for e in best_edges("acme", "s", "self", hits, RULES)] == ["a", "self"]


def test_an_offered_edge_replaces_the_older_one_to_its_item_and_the_list_stays_best_first() -> None:
    edges = [Edge("acme", "s", "a", 0.9), Edge("acme", "s", "b", 0.6)]
    assert with_edge(edges, Edge("acme", "s", "c", 0.7), RULES) == [edges[0], Edge("acme", "s", "c", 0.7)]
    assert with_edge(edges, Edge("acme", "s", "b", 0.95), RULES)[0] == Edge("acme", "s", "b", 0.95)
    assert with_edge(edges, Edge("acme", "s", "a", 0.3), RULES) == [edges[1]]  # rescored below: gone
    assert with_edge(edges, Edge("acme", "s", "c", 0.55), RULES) == edges  # not among the best two


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[EmbeddingStage]:
    async with EmbeddingStage(tmp_path) as made:
        yield made


TEXTS = {
    "refund-1": "refund for the rust course after withdrawal",
    "refund-2": "refund for the rust course after a withdrawal request",
    "fee-1": "enrollment fee paid for the rust course",
    "lab-1": "lab submission timed out in go",
}


async def test_edges_are_computed_once_for_each_content_and_follow_it(stage: EmbeddingStage) -> None:
    edges = RelatedEdges(stage.store, RelatedRules(top_k=2, min_score=0.6))
    batch = [stage.item(item_id, text) for item_id, text in TEXTS.items()]
    await stage.embedder.process(batch, "m")
    first = await edges.process(batch)
    again = await edges.process(batch)

    shown = read_related(stage.store, "acme", "payment-service", "refund-1")
    assert shown is not None and shown.computed
    assert [item.edge.item_id for item in shown.items] == ["refund-2", "fee-1"]
    assert shown.items[0].text == "title: " + TEXTS["refund-2"]
    assert first.items["computed"] == 4 and again.items == {"unchanged": 4}

    changed = [stage.item("lab-1", "refund for the rust course after withdrawal, again")]
    await stage.embedder.process(changed, "m")
    recomputed = await edges.process(changed)
    assert recomputed.items == {"computed": 1}
    lab = read_related(stage.store, "acme", "payment-service", "lab-1")
    assert lab is not None and lab.items[0].edge.item_id == "refund-1"
    # refund-1's list was full; the changed lab item is now closer than its worst edge, so it was offered in.
    refund = read_related(stage.store, "acme", "payment-service", "refund-1")
    assert refund is not None and [item.edge.item_id for item in refund.items] == ["refund-2", "lab-1"]


async def test_a_deleted_item_loses_its_edges_and_a_deletion_that_never_happens_gets_them_back(
    stage: EmbeddingStage,
) -> None:
    edges = RelatedEdges(stage.store, RelatedRules(top_k=2, min_score=0.6))
    batch = [stage.item(item_id, text) for item_id, text in TEXTS.items()]
    await stage.embedder.process(batch, "m")
    await edges.process(batch)
    gone = point_id("acme", "payment-service", "refund-2")
    pointing = {other.id for other in stage.store.pointing_at("acme", RELATED_IDS, gone, [])}
    assert pointing

    # The embedder only marks a deleted item: its run's deletions may yet be held, and never confirmed.
    deletion = [stage.item("refund-2", None, op="delete")]
    await stage.embedder.process(deletion, "m")
    assert (await edges.process(deletion)).items == {"deletion_waiting": 1}
    assert not stage.store.pointing_at("acme", RELATED_IDS, gone, [])
    assert {h.payload[RELATED_HASH] for h in stage.store.points(list(pointing), [RELATED_HASH]).values()} == {""}

    # A newer full run sees refund-2 again, unchanged: the lists it left are computed again, and point at it.
    again = [stage.item(item_id, text, run_id="run-2") for item_id, text in TEXTS.items()]
    await stage.embedder.process(again, "m")
    recomputed = await edges.process(again)
    assert recomputed.items["computed"] == len(pointing)
    assert {other.id for other in stage.store.pointing_at("acme", RELATED_IDS, gone, [])} == pointing

    stage.store.delete_item("acme", "payment-service", "refund-2")  # carried out this time
    shown = read_related(stage.store, "acme", "payment-service", "refund-1")
    assert shown is not None and "refund-2" not in {item.edge.item_id for item in shown.items}
    assert (await edges.process(deletion)).items == {"deleted": 1}
    assert not stage.store.pointing_at("acme", RELATED_IDS, gone, [])


async def test_a_merged_list_drops_its_edges_to_items_gone_since(stage: EmbeddingStage) -> None:
    edges = RelatedEdges(stage.store, RelatedRules(top_k=2, min_score=0.6))
    batch = [stage.item(item_id, text) for item_id, text in TEXTS.items()]
    await stage.embedder.process(batch, "m")
    await edges.process(batch)
    stage.store.delete_item("acme", "payment-service", "refund-2")  # its deletion event not read yet

    newcomer = [stage.item("refund-3", "refund for the rust course after withdrawal, requested twice")]
    await stage.embedder.process(newcomer, "m")
    await edges.process(newcomer)
    stored = stage.store.points([point_id("acme", "payment-service", "refund-1")], ["related"])
    kept = {edge["item_id"] for edge in next(iter(stored.values())).payload["related"]}
    assert "refund-2" not in kept and "refund-3" in kept


async def test_identical_items_of_two_tenants_never_point_at_each_other(stage: EmbeddingStage) -> None:
    edges = RelatedEdges(stage.store, RelatedRules(top_k=2, min_score=0.6))
    batch = [stage.item(i, text, tenant_id=tenant) for tenant in ("acme", "globex") for i, text in TEXTS.items()]
    await stage.embedder.process(batch, "m")
    await edges.process(batch)
    for tenant in ("acme", "globex"):
        shown = read_related(stage.store, tenant, "payment-service", "refund-1")
        assert shown is not None and shown.items
        assert {item.edge.tenant_id for item in shown.items} == {tenant}


async def test_an_item_not_stored_yet_or_with_edges_off_reads_as_such(stage: EmbeddingStage) -> None:
    assert read_related(stage.store, "acme", "payment-service", "nothing") is None
    batch = [stage.item("refund-1", TEXTS["refund-1"])]
    await stage.embedder.process(batch, "m")
    shown = read_related(stage.store, "acme", "payment-service", "refund-1")
    assert shown is not None and not shown.computed and shown.items == []
    first = point_id("acme", "payment-service", "refund-1")
    assert RELATED_HASH not in stage.store.points([first], [RELATED_HASH])[first].payload
