"""How a command ends: the exit codes, and the one line and the code each expected error gets, decided here alone.

Every command's errors come here (`ragsync.cli.commands.CommandLine` catches each `RagsyncError`), so a start-up
problem reads and exits the same whichever command met it, and never as a traceback. A bug is no `RagsyncError`:
it keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from rich.console import Console

from ragsync.errors import RagsyncError, Refused, RunError, SetupError
from ragsync.settings import SettingsError
from ragsync.shown import labelled

OK = 0
# A run-time failure: a run that did not succeed, runs not finished in time, a refused request, nothing found.
FAILED = 1
# Nothing could start, or was done: a bad setting, option or schema, a broker or store that cannot be reached.
SETUP = 2
# A long-running component stopped for its supervisor to restart it: a stage crashing in a loop, lost run state.
RESTART = 3


def exit_code(error: RagsyncError) -> int:
    """The code a command that met `error` exits with: its branch decides, but for a component's crash loop."""
    from ragsync.operations.supervision import StageCrashLoopError  # its metrics are not worth importing up front

    if isinstance(error, SetupError):
        return SETUP
    if isinstance(error, StageCrashLoopError):
        return RESTART
    return FAILED


def label(error: RagsyncError) -> str:
    """The words said before `error`'s own message: those of the first kind in the list that it is."""
    # Imported here, not up front: each pulls in a client library that a command without an error never needs.
    from ragsync.messaging.reachability import BrokerUnreachable
    from ragsync.operations.supervision import StageCrashLoopError
    from ragsync.runstate.runstate_errors import ComponentStoppedError, RunTimeoutError

    labels: list[tuple[type[RagsyncError] | tuple[type[RagsyncError], ...], str]] = [
        (SettingsError, "bad setting:"),
        (BrokerUnreachable, "cannot reach"),  # its message starts with the broker: "Kafka at host:port: ..."
        (SetupError, "cannot start:"),
        ((RunTimeoutError, ComponentStoppedError), "not finished:"),
        (StageCrashLoopError, "stopping:"),
        (Refused, "refused:"),
        (RunError, "failed:"),
    ]
    return next((words for kind, words in labels if isinstance(error, kind)), "error:")


def end(error: RagsyncError, console: Console) -> NoReturn:
    """Say `error` on `console` in one line (however narrow the terminal) and exit with its code."""
    console.print(labelled(label(error), error), soft_wrap=True)
    sys.exit(exit_code(error))
