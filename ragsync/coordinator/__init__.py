"""The client side of the Coordinator contract: signed, paged, retried `Route` calls."""

from ragsync.coordinator.client import CoordinatorClient, CoordinatorError, CoordinatorOptions
from ragsync.coordinator.envelope import BadPageError, records_from_envelope
from ragsync.coordinator.paging import Page, PageQuery, PagingError, iterate_pages
from ragsync.coordinator.signing import Signer, SigningKeyError

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
