"""The root of every error ragsync raises on purpose, and the two branches each of them is on.

One root, families below it, and errors mapped to what a person sees at the boundary (as httpx does): the command
line turns each into one line and an exit code (`ragsync.cli.exits`), the ops endpoints into an HTTP status. A
family lives beside the code that raises it (`ragsync.coordinator.coordinator_errors`,
`ragsync.store.store_errors`, `ragsync.runstate.runstate_errors`, or the one module that raises it). Every class
is under exactly one branch, `SetupError` or `RunError`, which says whether anything could start; a test walks the
namespace to keep it so. A bug is none of these: it keeps its traceback.
"""


class RagsyncError(Exception):
    """An expected condition, as opposed to a bug: the root that lets a caller tell the two apart (one line for a
    person, or a traceback for a developer). Never raised itself: raise a class under `SetupError` or `RunError`.

    The message is what a person reads, whole, on one line: what is wrong (naming the setting, file, address,
    service, page or run, with the value) and what to do about it."""


class SetupError(RagsyncError):
    """Configuration or environment that keeps a component from starting: a bad setting or schema, a key that
    cannot be read, a store or broker that cannot be opened. Nothing was done, and starting again unchanged fails
    the same way; the CLI exits 2. The message names what to change."""


class RunError(RagsyncError):
    """Something that went wrong while running, after a good start: a Coordinator call that failed for good, a
    page or record that cannot be read, runs that did not finish in time, a stage that crashed too often. The CLI
    exits 1 (3 when a long-running component stops for its supervisor to restart it). The message names what
    failed and why, and what to do when something can be (sync again, restart, read the log)."""


class Refused(RunError):
    """A well-formed request that cannot be done as asked (a prune of a run that holds nothing, say): an answer
    at run time, not a start-up problem, so the CLI exits 1 and the ops endpoints answer 409. The message says why
    and what to do instead."""
