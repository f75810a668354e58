"""What can go wrong while waiting on runs or following their state: runs that did not finish in time, a stage
that stopped under them, and a run-state topic that was deleted or recreated under a running process."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ragsync.errors import RunError
from ragsync.operations.supervision import UnrecoverableStageError

if TYPE_CHECKING:
    from ragsync.runstate.runs import RunState


class RunTimeoutError(RunError):
    """Runs that did not finish within the time a command gave them (they may still finish: a long-running
    embedder carries on). The message names each one, its status and how many of its items were stored."""

    def __init__(self, runs: list[RunState], seconds: float) -> None:
        self.runs = runs
        stuck = "; ".join(
            f"{r.service} ({r.run_id[:8]}) {r.status}: {r.items_upserted}/{r.items_fetched} items" for r in runs
        )
        super().__init__(f"{len(runs)} run(s) did not finish within {seconds:.0f}s: {stuck}")


class ComponentStoppedError(RunError):
    """A stage that should keep running ended while runs were being waited for: waiting on would never end. The
    message names the stage and why it stopped."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        cause = task.exception() if not task.cancelled() else None
        super().__init__(f"the {task.get_name()} stopped while runs were in progress: {cause!r}")


class RunStateLostError(UnrecoverableStageError):
    """The run-state topic was deleted or recreated under a running process: what it folded no longer matches
    the topic, and only a fresh start (which creates the topic again, compacted) reads it right. The message says
    what happened to the topic and to restart the component."""

    def __init__(self, topic: str, what: str) -> None:
        super().__init__(
            f"the run-state topic {topic} {what}: the run state this process holds is gone from the broker. "
            "Restart the component: it creates the topic again (compacted) and starts from what is kept. "
            "Never delete this topic under running components"
        )
