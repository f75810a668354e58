"""What can go wrong with the Coordinator: a call that failed for good, a page that cannot be read, paging that
cannot go on (while a run is fetching, so each fails that run alone), and a signing or verification key that
cannot be used (before anything is called)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragsync.errors import RunError, SetupError

if TYPE_CHECKING:
    import grpc


class CoordinatorError(RunError):
    """A call that failed for good, after the retries its code allows: the run it was for fails. The message names
    the service, the page, the gRPC code, how many attempts were made and the cause (with a hint at the setting to
    check, for a refused certificate)."""

    def __init__(self, service: str, page: int, code: grpc.StatusCode | None, detail: str, attempts: int) -> None:
        self.service, self.page, self.code, self.attempts = service, page, code, attempts
        code_name = code.name if code is not None else "ERROR"
        retry_note = f" after {attempts} attempts" if attempts > 1 else " (not retryable)"
        super().__init__(f"{service} page {page}: Coordinator answered {code_name}{retry_note}: {detail}")


class BadPageError(RunError):
    """A page whose envelope holds no list of records. Never to be taken as "no more data": the run fails, naming
    the service, the page and the reason.

    Its message is the run's error, shown by `status` and `/status`, so it holds no record text: how the page
    starts (`start`) goes to the fetcher's log alone."""

    def __init__(self, service: str, page: int, reason: str, text: str) -> None:
        self.service, self.page, self.reason = service, page, reason
        self.start = text[:120]
        super().__init__(
            f"{service} page {page}: bad envelope: {reason} ({len(text)} characters; the fetcher's log shows how "
            "it starts)"
        )


class PagingError(RunError):
    """Paging cannot go on safely (a repeated page, too many pages, an unreadable `has_more`): the run fails
    rather than loop or stop short. The message names the service, the page and the setting that bounds it."""


class SigningKeyError(SetupError):
    """RAG_PRIVATE_KEY (or a verification key) cannot be used, so no call could be signed or checked; the message
    says why and what to give instead."""
