"""Related-content edges: each item's nearest other items of its tenant, kept on the item's first point.

With RELATED_EDGES=on, the first point (chunk 0) of every item carries, beside what the embedder wrote:

    related        [{"tenant_id", "service", "item_id", "score"}, ...], best first, at most RELATED_TOP_K
    related_ids    the first-point ids of those items: a keyword index finds the edges that point at an item
    related_hash   the content hash the edges were computed for

The embedder writes a changed item's points whole, so a changed item has no `related_hash` (or another one) until
its edges are computed again; an unchanged item is only touched and keeps them. Edges live in the collection they
were computed in, so a model change computes them again in the new collection, behind the alias switch.

Reading checks every edge against the live collection: an edge to an item deleted or pruned since is never shown.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ragsync.store import Hit, VectorStore, point_id

RELATED = "related"
RELATED_IDS = "related_ids"
RELATED_HASH = "related_hash"
NEIGHBOUR_FIELDS = ["tenant_id", "service", "item_id"]


@dataclass(frozen=True, kw_only=True)
class RelatedRules:
    """How many related items each item keeps, and the least similarity that counts as related."""

    top_k: int = 5
    min_score: float = 0.6

    @property
    def query_limit(self) -> int:
        """Points to ask for: the item's own chunks and several chunks of one neighbour come back too."""
        return 3 * (self.top_k + 1)


@dataclass(frozen=True)
class Edge:
    """An edge to another item of the same tenant, with the cosine similarity of their first chunks."""

    tenant_id: str
    service: str
    item_id: str
    score: float

    @functools.cached_property
    def point(self) -> str:
        """The first point of the item the edge points at (computed once: lists are merged edge by edge)."""
        return point_id(self.tenant_id, self.service, self.item_id, 0)

    def as_payload(self) -> dict[str, Any]:
        """The edge as stored in the payload."""
        return {"tenant_id": self.tenant_id, "service": self.service, "item_id": self.item_id, "score": self.score}

    @classmethod
    def from_payload(cls, stored: dict[str, Any]) -> Edge:
        """An edge read back from the payload."""
        return cls(str(stored["tenant_id"]), str(stored["service"]), str(stored["item_id"]), float(stored["score"]))


def stored_edges(payload: dict[str, Any]) -> list[Edge]:
    """The edges a point's payload holds (none when they were never computed)."""
    return [Edge.from_payload(edge) for edge in payload.get(RELATED) or []]


def best_edges(tenant_id: str, service: str, item_id: str, hits: Iterable[Hit], rules: RelatedRules) -> list[Edge]:
    """The item's edges from its nearest points: one per other item of the tenant (its best chunk), at least
    `min_score`, best first, at most `top_k`. Hits of another tenant are never edges, whatever the query did."""
    edges: dict[tuple[str, str], Edge] = {}
    for hit in sorted(hits, key=lambda h: -h.score):
        other = (str(hit.payload.get("service")), str(hit.payload.get("item_id")))
        if hit.payload.get("tenant_id") != tenant_id or other == (service, item_id) or other in edges:
            continue
        if hit.score < rules.min_score or len(edges) == rules.top_k:
            break
        edges[other] = Edge(tenant_id, other[0], other[1], hit.score)
    return list(edges.values())


def with_edge(edges: list[Edge], edge: Edge, rules: RelatedRules) -> list[Edge]:
    """`edges` with `edge` in its place (replacing an older edge to the same item), best first, at most `top_k`;
    an edge below `min_score` only removes the older one."""
    others = [e for e in edges if (e.service, e.item_id) != (edge.service, edge.item_id)]
    if edge.score >= rules.min_score:
        others.append(edge)
    return sorted(others, key=lambda e: -e.score)[: rules.top_k]


def edges_payload(edges: list[Edge], content_hash: str | None = None) -> dict[str, Any]:
    """The payload fields that hold `edges` (and the content hash they were computed for, when given)."""
    payload: dict[str, Any] = {RELATED: [e.as_payload() for e in edges], RELATED_IDS: [e.point for e in edges]}
    if content_hash is not None:
        payload[RELATED_HASH] = content_hash
    return payload


@dataclass(frozen=True)
class RelatedItem:
    """An edge as read: the item it points at, its score and the item's (first chunk's) text."""

    edge: Edge
    text: str


@dataclass(frozen=True)
class Related:
    """An item's related items as read from the live collection."""

    computed: bool  # False: RELATED_EDGES is off, or the item's edges are still waiting
    items: list[RelatedItem]


def read_related(store: VectorStore, tenant_id: str, service: str, item_id: str) -> Related | None:
    """The item's related items in the live collection, each still there (an item deleted or pruned since the
    edges were computed is left out); None when the item itself is not there."""
    first = point_id(tenant_id, service, item_id, 0)
    found = store.points([first], [RELATED, RELATED_HASH], live=True)
    if first not in found:
        return None
    payload = found[first].payload
    edges = [edge for edge in stored_edges(payload) if edge.tenant_id == tenant_id]
    targets = store.points([edge.point for edge in edges], ["text"], live=True)
    items = [RelatedItem(e, str(targets[e.point].payload.get("text", ""))) for e in edges if e.point in targets]
    return Related(RELATED_HASH in payload, items)
