"""The model in a process of its own (EMBEDDING_PROCESS): the same vectors, and a child that dies is replaced
loudly and never outlives its parent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from ragsync.model import placement
from ragsync.model.encoder import TextEncoder
from ragsync.model.encoder_process import ModelProcessExited, ProcessEncoder
from ragsync.model.placement import AutoEncoder
from ragsync.operations import metrics

TEXTS = ["refund", "Payment 4411 failed: the card issuer declined it.", "Ünïcödé ✓ 日本語 " * 30]


@pytest.fixture(scope="module")
def in_process() -> Iterator[ProcessEncoder]:
    encoder = ProcessEncoder()
    encoder.load()
    yield encoder
    encoder.close()


async def test_the_models_process_gives_the_models_own_vectors(
    encoder: TextEncoder, in_process: ProcessEncoder
) -> None:
    assert in_process.loaded and in_process.pid not in (None, os.getpid())
    expected = np.array(encoder.encode(TEXTS))
    assert np.abs(np.array(in_process.encode(TEXTS)) - expected).max() < 1e-6
    together = await in_process.encode_async(TEXTS)
    assert np.abs(np.array(together) - expected).max() < 1e-6
    assert in_process.encode([]) == []


async def test_a_killed_model_process_fails_its_encodes_with_a_reason_and_the_next_encode_starts_another(
    in_process: ProcessEncoder,
) -> None:
    exits = metrics.MODEL_PROCESS_EXITS._value.get()
    first = in_process.pid
    assert first is not None
    encoding = asyncio.ensure_future(in_process.encode_async(TEXTS * 200))  # seconds of work
    await asyncio.sleep(0.5)
    os.kill(first, signal.SIGKILL)
    with pytest.raises(ModelProcessExited, match=r"exited \(exit code -9"):
        await encoding
    assert metrics.MODEL_PROCESS_EXITS._value.get() == exits + 1
    assert not in_process.loaded
    assert len(await in_process.encode_async(TEXTS)) == len(TEXTS)
    assert in_process.loaded and in_process.pid not in (None, first)


SCRIPT = """
import os, sys
from ragsync.model.encoder_process import ProcessEncoder
if __name__ == "__main__":
    encoder = ProcessEncoder()
    encoder.encode(["warm"])
    print(encoder.pid, flush=True)
    os.kill(os.getpid(), 9)
"""


def test_the_models_process_ends_with_its_parent(tmp_path: os.PathLike[str]) -> None:
    script = os.path.join(tmp_path, "parent.py")
    with open(script, "w") as file:
        file.write(SCRIPT)
    output = os.path.join(tmp_path, "out.txt")
    with open(output, "w") as out:  # not a pipe: a child left alive would hold it open
        done = subprocess.run([sys.executable, script], stdout=out, stderr=subprocess.STDOUT, timeout=300, check=False)
    with open(output) as out:
        printed = out.read()
    assert done.returncode == -signal.SIGKILL, printed
    child = int(printed.split()[0])
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the model's process outlived its killed parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "zombie" not in status.read()
    except FileNotFoundError:
        return False


async def test_auto_encodes_in_place_until_its_window_chose_a_process_then_in_the_child_once_it_is_ready(
    encoder: TextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(placement, "WINDOW_TEXTS", 60)
    monkeypatch.setattr(placement, "MOVE_AT", float("inf"))  # any model counts as fast: the move is what is tested
    auto = AutoEncoder(cores=2)
    expected = np.array(encoder.encode(TEXTS))
    try:
        await auto.load_async()
        for _ in range(19):  # 57 texts: still deciding, all in place
            assert np.abs(np.array(await auto.encode_async(TEXTS)) - expected).max() < 1e-6
        assert auto.placement.where == "deciding" and auto.pid is None
        await auto.encode_async(TEXTS)  # 60: decided, and the child starts loading its model
        decided = auto.placement  # read again: the encode above changed it
        assert decided.where == "its own process" and "µs of CPU a text" in decided.reason
        deadline = time.monotonic() + 120
        while not auto.moved and time.monotonic() < deadline:
            assert np.abs(np.array(await auto.encode_async(TEXTS)) - expected).max() < 1e-6  # in place meanwhile
            await asyncio.sleep(0.1)
        assert auto.moved and auto.pid not in (None, os.getpid())
        assert np.abs(np.array(await auto.encode_async(TEXTS)) - expected).max() < 1e-6
    finally:
        auto.close()


def test_auto_keeps_a_model_that_is_most_of_the_time_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "WINDOW_TEXTS", 60)
    auto = AutoEncoder(cores=2)
    try:
        for _ in range(20):  # all-MiniLM-L6-v2 with nothing else to do: the rest is next to nothing
            auto.encode(TEXTS)
        assert auto.placement.where == "this process", auto.placement
        assert auto.placement.model_us is not None and auto.placement.rest_us is not None
        assert auto.placement.model_us > placement.MOVE_AT * auto.placement.rest_us
        assert auto.pid is None
    finally:
        auto.close()
