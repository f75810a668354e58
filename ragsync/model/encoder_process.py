"""The model in a process of its own (EMBEDDING_PROCESS=true): texts go to it, vectors come back.

In the embedder's own process the model shares the GIL with the event loop and the embedded store, and qdrant-edge
holds the GIL while it converts and applies a write: the model's thread waits through every write, so the two run
one after the other. In a child process, encoding overlaps everything else. It pays for a second interpreter
holding a second copy of the model (the embedder keeps its own, for the tokenizer that cuts long texts into chunks),
so it is for fast encoders, where the model no longer dominates an item's time.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import multiprocessing
import os
import queue
import threading
from concurrent.futures import Future
from multiprocessing.connection import Connection, wait
from typing import Any

from ragsync.errors import RunError
from ragsync.model.encoder import ModelOptions, TextEncoder
from ragsync.model.tokens import Vectors
from ragsync.operations import metrics

log = logging.getLogger(__name__)
STOP_S = 10.0  # how long a closing encoder waits for its child to finish the batch it is encoding


class ModelProcessExited(RunError):
    """The model's process ended while it had texts to encode (killed, out of memory, or a model that failed to
    load): those encodes fail, and the batch is retried in a new process. The message gives the exit code and
    points at the log."""


class ProcessEncoder(TextEncoder):
    """A `TextEncoder` whose encodes run in a child process holding its own copy of the model (loaded with the same
    arguments). The child starts on first use, and again after it exits."""

    def __init__(self, options: ModelOptions | None = None) -> None:
        super().__init__(options)
        self._child: ModelProcess | None = None
        self._child_lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The child's process id, while it runs."""
        child = self._child
        return child.pid if child is not None and child.alive else None

    def load(self) -> None:
        """Load the model here (the chunker reads its tokenizer) and in the child, at the same time."""
        child = self._running()
        super().load()
        child.loaded.result()

    async def load_async(self) -> None:
        """`load` without blocking the event loop."""
        await asyncio.to_thread(self.load)

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory here and in a running child."""
        child = self._child
        return super().loaded and child is not None and child.alive and child.loaded.done()

    def vectors(self, texts: list[str]) -> Vectors:
        """One normalised vector per text, encoded by the child."""
        return self._running().encode(texts).result()

    async def encode_async(self, texts: list[str]) -> list[list[float]]:
        """`encode` in the child. Encodes asked for meanwhile queue up in the child, so it never waits on this
        process between them."""
        vectors = await asyncio.wrap_future(self._running().encode(texts))
        result: list[list[float]] = vectors.tolist()
        return result

    def close(self) -> None:
        """Stop the child once it has finished what it is encoding."""
        super().close()
        with self._child_lock:
            child, self._child = self._child, None
        if child is not None:
            child.stop()

    def _running(self) -> ModelProcess:
        with self._child_lock:
            if self._child is None or not self._child.alive:
                self._child = ModelProcess(self.options)
            return self._child


class ModelProcess:
    """One child process encoding in the order asked: texts in over a queue, vectors back over a pipe. A thread
    here hands each answer to its future, and fails every unanswered one if the child exits."""

    def __init__(self, options: ModelOptions) -> None:
        context = multiprocessing.get_context("spawn")  # no copy of this process's threads and locks
        self._requests: multiprocessing.Queue[tuple[int, list[str]] | None] = context.Queue()
        self._answers, answers = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve, args=(self._requests, answers, options), name="model", daemon=True
        )
        self._process.start()
        answers.close()
        self._pending: dict[int, Future[Vectors]] = {}
        self._lock = threading.Lock()
        self._numbers = iter(range(1, 2**62))
        self.loaded: Future[None] = Future()  # answer 0: the child's model is loaded
        self.alive = True
        self._stopping = False
        threading.Thread(target=self._receive, name="model-answers", daemon=True).start()
        atexit.register(self.stop)  # before multiprocessing's own handler would terminate the child

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self._process.pid

    def encode(self, texts: list[str]) -> Future[Vectors]:
        """Queue `texts`; their vectors arrive on the future."""
        future: Future[Vectors] = Future()
        with self._lock:
            if not self.alive:
                future.set_exception(self._exited())
                return future
            number = next(self._numbers)
            self._pending[number] = future
        self._requests.put((number, texts))
        return future

    def stop(self) -> None:
        """Ask the child to exit after its current encode; kill it if it does not."""
        atexit.unregister(self.stop)
        self._stopping = True
        self._requests.put(None)
        self._process.join(STOP_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._requests.close()

    def _receive(self) -> None:
        while True:
            ready = wait([self._answers, self._process.sentinel])
            if self._answers not in ready:
                break
            try:
                number, answer = self._answers.recv()
            except EOFError:
                break
            future = self.loaded if number == 0 else self._pending.pop(number, None)
            if future is not None:
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
        self._fail_pending()

    def _fail_pending(self) -> None:
        self._process.join()
        atexit.unregister(self.stop)  # an ended child needs no stopping at exit, nor this object kept until then
        with self._lock:
            self.alive = False
            pending: list[Future[Any]] = [*self._pending.values(), self.loaded]
            self._pending.clear()
        error = self._exited()
        unanswered = [future for future in pending if not future.done()]
        if unanswered or not (self._stopping or self._process.exitcode == 0):
            metrics.MODEL_PROCESS_EXITS.inc()  # counted before anyone waiting hears of it
            log.error("%s", error)
        for future in unanswered:
            future.set_exception(error)

    def _exited(self) -> ModelProcessExited:
        return ModelProcessExited(
            f"the model's process exited (exit code {self._process.exitcode}: killed, out of memory, or a model "
            "that failed to load; see the log above); a new one starts on the next encode"
        )


def _serve(
    requests: multiprocessing.Queue[tuple[int, list[str]] | None],
    answers: Connection,
    options: ModelOptions,
) -> None:
    """The child: load the model, then encode each request in turn until told to stop."""
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    # A thread sends the answers: a batch's vectors overfill the pipe, and the parent reads them only when its GIL
    # is free (a store write holds it for tens of ms), so sending them here would stop the model meanwhile.
    outbox: queue.SimpleQueue[tuple[int, Any] | None] = queue.SimpleQueue()
    sender = threading.Thread(target=_send_answers, args=(outbox, answers), name="answers")
    sender.start()
    try:
        encoder = TextEncoder(options)
        encoder.load()  # a model that fails to load ends the child with its traceback on stderr
        outbox.put((0, None))
        while (request := requests.get()) is not None:
            number, texts = request
            try:
                outbox.put((number, encoder.vectors(texts)))
            except Exception as error:  # noqa: BLE001 - the batch fails in the parent, with the reason
                outbox.put((number, RuntimeError(f"{type(error).__name__}: {error}")))
    finally:
        outbox.put(None)
        sender.join()


def _send_answers(outbox: queue.SimpleQueue[tuple[int, Any] | None], answers: Connection) -> None:
    while (answer := outbox.get()) is not None:
        answers.send(answer)


def _exit_with_parent() -> None:
    """The child's queue stays open while it lives, so it would outlive a parent that was killed."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        wait([parent.sentinel])
        os._exit(1)
