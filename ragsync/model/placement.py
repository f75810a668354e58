"""EMBEDDING_PROCESS=auto, the default: the model starts in the embedder's process, and moves to a process of its
own once the texts it has encoded show that it is fast relative to the rest of the batch.

The rule, measured over the first WINDOW_TEXTS texts encoded in place: the model's CPU against the rest of the
process's CPU over the same time (decoding, sorting, chunking, writing the store). The model's is its thread's CPU
times the threads it computes on (TORCH_THREADS, else the library's default of one per core): its helper threads
spin while they wait, so they burn what they are given, and counting them as the rest's would make any model look
fast on a machine with several cores.

A child runs the two side by side on two cores, which pays while the model takes at most MOVE_AT times the rest.
Beyond that the model is nearly all of an item's time (all-MiniLM-L6-v2 on a CPU takes 9,200 µs of CPU a text
here, the rest a few hundred): a child has little to overlap, and costs a second interpreter and a second copy of
the model. With one core there is nothing to overlap, and the model stays.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Literal

from ragsync.model.encoder import ModelOptions
from ragsync.model.encoder_process import ProcessEncoder
from ragsync.model.tokens import Vectors

log = logging.getLogger(__name__)
WINDOW_TEXTS = 2048  # texts encoded in place before deciding: a few slices, past the model's first slow passes
MOVE_AT = 6.0  # the model moves while its CPU per text is at most this many times the rest's (see the benchmark)

Where = Literal["deciding", "this process", "its own process"]
DECIDED = "EMBEDDING_PROCESS=auto: the model runs in "  # the log line's start, then where (the benchmark reads it)


@dataclass(frozen=True)
class Placement:
    """Where the model runs, and the figures it was decided on (CPU µs per text encoded, over the window)."""

    where: Where
    model_us: float | None = None
    rest_us: float | None = None
    reason: str = ""

    def status(self) -> dict[str, object]:
        """The placement on /status."""
        return {"where": self.where, "model_us": self.model_us, "rest_us": self.rest_us, "reason": self.reason}


def decide(model_s: float, rest_s: float, texts: int, cores: int) -> Placement:
    """Where the model should run, given its CPU seconds and the rest's over `texts` texts, on `cores` cores."""
    model_us, rest_us = model_s / texts * 1e6, max(rest_s, 0.0) / texts * 1e6
    figures = f"the model {model_us:.0f} µs of CPU a text, the rest {rest_us:.0f} µs"
    if cores < 2:
        return Placement("this process", model_us, rest_us, f"one core: nothing to overlap ({figures})")
    if model_us > MOVE_AT * rest_us:
        reason = f"{figures}: the model is most of the time, above {MOVE_AT:g} times the rest"
        return Placement("this process", model_us, rest_us, reason)
    reason = f"{figures}: at most {MOVE_AT:g} times the rest, so a process of its own overlaps them"
    return Placement("its own process", model_us, rest_us, reason)


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


class AutoEncoder(ProcessEncoder):
    """A `ProcessEncoder` that encodes in place until the first WINDOW_TEXTS texts decide (see `decide`); then, if
    they chose a process of its own, encodes in place until the child has loaded its model, and in it after."""

    def __init__(self, options: ModelOptions | None = None, cores: int | None = None) -> None:
        super().__init__(options)
        self._cores = usable_cores() if cores is None else cores
        self.placement = Placement("deciding")
        self._window_lock = threading.Lock()
        self._model_s = 0.0
        self._texts = 0
        self._started: float | None = None  # the process's CPU clock at the window's first encode

    def load(self) -> None:
        """Load the model here; a child starts only once the window chose one."""
        super(ProcessEncoder, self).load()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory here (where it encodes until a child is ready)."""
        return super(ProcessEncoder, self).loaded

    @property
    def moved(self) -> bool:
        """Whether encodes go to the child now: it was chosen, and has loaded its model."""
        child = self._child
        return child is not None and child.alive and child.loaded.done() and not child.loaded.exception()

    def vectors(self, texts: list[str]) -> Vectors:
        """The vectors of `texts`: in the child once it is ready, else here, measured while deciding."""
        if self.moved:
            return super().vectors(texts)
        if self.placement.where != "deciding":
            return super(ProcessEncoder, self).vectors(texts)
        self.load()  # a model loading is not a model encoding
        with self._window_lock:
            if self._started is None:
                self._started = time.process_time()
        before = time.thread_time()
        vectors = super(ProcessEncoder, self).vectors(texts)
        self._measured((time.thread_time() - before) * self._model_threads(), len(texts))
        return vectors

    def _model_threads(self) -> int:
        if self.backend == "torch":
            import torch  # loaded with the model by now

            return int(torch.get_num_threads())
        return self.options.threads or self._cores

    async def encode_async(self, texts: list[str]) -> list[list[float]]:
        """`encode` in the child once it is ready, else on this process's model thread."""
        if self.moved:
            return await super().encode_async(texts)
        return await super(ProcessEncoder, self).encode_async(texts)

    def _measured(self, model_s: float, texts: int) -> None:
        with self._window_lock:
            if self.placement.where != "deciding" or self._started is None:
                return
            self._model_s += model_s
            self._texts += texts
            if self._texts < WINDOW_TEXTS:
                return
            rest_s = time.process_time() - self._started - self._model_s
            self.placement = decide(self._model_s, rest_s, self._texts, self._cores)
        log.info("%s%s (%s)", DECIDED, self.placement.where, self.placement.reason)
        if self.placement.where == "its own process":
            self._running()  # starts the child, which loads its model while encodes go on here
