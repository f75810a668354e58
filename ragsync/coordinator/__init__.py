"""The client side of the Coordinator contract: signed, paged, retried `Route` calls."""

from ragsync.coordinator.client import CoordinatorClient, CoordinatorOptions
from ragsync.coordinator.coordinator_errors import BadPageError, CoordinatorError, PagingError, SigningKeyError
from ragsync.coordinator.envelope import records_from_envelope
from ragsync.coordinator.paging import Page, PageQuery, iterate_pages
from ragsync.coordinator.signing import Signer

__all__ = [
    "BadPageError",
    "CoordinatorClient",
    "CoordinatorError",
    "CoordinatorOptions",
    "Page",
    "PageQuery",
    "PagingError",
    "Signer",
    "SigningKeyError",
    "iterate_pages",
    "records_from_envelope",
]
