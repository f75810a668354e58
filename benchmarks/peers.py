"""Peers, on the same texts and the same machine as the ceiling: what else one could run instead of ragsync.

In this process, on the short corpus (`peer_rows`): a LlamaIndex `IngestionPipeline` into a `QdrantVectorStore`,
the plain loop of encode 32 + upsert 32, and the pipeline's re-run over a docstore with nothing changed. Each is
best of 3, as items/s and as a share of the raw encode; a raw encode follows each run (as in the pipeline step),
since this machine's speed drifts.

As whole commands (`oneshot_rows`): `ragsync sync --service payment-service` against the LlamaIndex script
`benchmarks.peer_script` doing the same job, paired run by run, then each again on its own data: the unchanged
re-sync.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client.models import Distance, PointStruct, VectorParams

from benchmarks.peer_script import BATCH, METADATA, MODEL, SERVICE, TENANT, documents, embedding, ingestion
from benchmarks.pipeline import Bench
from benchmarks.report import Row
from ragsync.demo.coordinator_server import CoordinatorServer, DemoCoordinator
from ragsync.demo.records import demo_record
from ragsync.model.encoder import model_path

REPEATS = 3  # runs per in-process figure; the best is reported, as for the ceiling
ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT_S = 900.0
RESYNC_GOAL_S = 3.0


# --- in this process ---------------------------------------------------------------------------------------------
async def peer_rows(bench: Bench, count: int) -> list[Row]:
    """The three in-process peer rows on the first `count` short texts."""
    texts = bench.texts("short", count)
    items = [(str(demo_record(SERVICE, index)["id"]), text) for index, text in enumerate(texts)]
    embed_model = await asyncio.to_thread(embedding)
    model = await asyncio.to_thread(_sentence_transformer)
    client = QdrantClient(path=str(bench.folder / "peers"))
    try:
        llama = await _best_of(bench, texts, lambda n: _pipeline_seconds(embed_model, client, items, f"llama-{n}"))
        loop = await _best_of(bench, texts, lambda n: _loop_seconds(model, client, items, f"loop-{n}"))
        first_s, agains = await asyncio.to_thread(_rerun_seconds, embed_model, client, items)
    finally:
        client.close()
    ceiling = bench.best_ceiling("short")
    return [
        _peer_row("peer: LlamaIndex IngestionPipeline → QdrantVectorStore (local path)", count, llama, ceiling),
        _peer_row("peer: plain loop, encode 32 + upsert 32", count, loop, ceiling),
        _rerun_row(count, first_s, agains, ceiling),
    ]


@dataclass
class PeerRuns:
    """Each run's seconds, and the raw encode's items/s right after it."""

    seconds: list[float]
    raw_rates: list[float]


async def _best_of(bench: Bench, texts: list[str], run: Callable[[int], float]) -> PeerRuns:
    """`REPEATS` runs of `run` (a fresh collection each), each followed by a raw encode of the same texts."""
    runs = PeerRuns([], [])
    for n in range(REPEATS):
        runs.seconds.append(await asyncio.to_thread(run, n))
        runs.raw_rates.append(await bench.raw_encode("short", texts))
    return runs


def _sentence_transformer() -> Any:
    """The packaged model, loaded as a plain sentence-transformers user would."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path(MODEL), device="cpu")


def _pipeline_seconds(embed_model: Any, client: QdrantClient, items: list[tuple[str, str]], collection: str) -> float:
    """One `pipeline.run` into a new collection (the documents are built before the clock starts)."""
    pipeline = ingestion(embed_model, client, collection, with_docstore=False)
    built = documents(items)
    started = time.perf_counter()
    pipeline.run(documents=built)
    seconds = time.perf_counter() - started
    _check_points(client, collection, len(items))
    return seconds


def _loop_seconds(model: Any, client: QdrantClient, items: list[tuple[str, str]], collection: str) -> float:
    """Encode 32 texts, upsert those 32 points, over all items, into a new collection."""
    client.create_collection(collection, vectors_config=VectorParams(size=384, distance=Distance.COSINE))
    started = time.perf_counter()
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        vectors = model.encode([text for _, text in batch], batch_size=BATCH, normalize_embeddings=True)
        points = [
            PointStruct(id=_point_id(item_id), vector=vector.tolist(), payload=_payload(item_id, text))
            for (item_id, text), vector in zip(batch, vectors, strict=True)
        ]
        client.upsert(collection, points)
    seconds = time.perf_counter() - started
    _check_points(client, collection, len(items))
    return seconds


def _rerun_seconds(embed_model: Any, client: QdrantClient, items: list[tuple[str, str]]) -> tuple[float, list[float]]:
    """A pipeline with a docstore: its first run, then `REPEATS` runs of the same, unchanged documents."""
    pipeline = ingestion(embed_model, client, "llama-docstore", with_docstore=True)
    started = time.perf_counter()
    pipeline.run(documents=documents(items))
    first_s = time.perf_counter() - started
    agains = []
    for _ in range(REPEATS):
        built = documents(items)  # what a re-sync starts from: the records read again
        started = time.perf_counter()
        embedded = pipeline.run(documents=built)
        agains.append(time.perf_counter() - started)
        if embedded:
            raise RuntimeError(f"the LlamaIndex docstore re-embedded {len(embedded)} unchanged documents")
    return first_s, agains


def _point_id(item_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{TENANT}/{SERVICE}/{item_id}"))


def _payload(item_id: str, text: str) -> dict[str, str]:
    return dict(zip(METADATA, (item_id, TENANT, SERVICE), strict=True)) | {"text": text}


def _check_points(client: QdrantClient, collection: str, expected: int) -> None:
    """A peer that stored less than everything has not done the job: fail loudly rather than report its speed."""
    stored = client.count(collection).count
    if stored != expected:
        raise RuntimeError(f"{collection}: {stored} points stored, {expected} expected")


def _peer_row(benchmark: str, count: int, runs: PeerRuns, ceiling: float) -> Row:
    best = min(runs.seconds)
    shares = ", ".join(f"{count / seconds / ceiling:.2f}" for seconds in runs.seconds)
    beside = ", ".join(f"{count / s / raw:.2f}" for s, raw in zip(runs.seconds, runs.raw_rates, strict=True))
    return Row(
        benchmark,
        "short",
        count,
        best,
        count / best,
        f"{count / best / ceiling:.2f} of raw encode (runs: {shares}; each against the raw encode right after it: "
        f"{beside})",
    )


def _rerun_row(count: int, first_s: float, agains: list[float], ceiling: float) -> Row:
    best = min(agains)
    return Row(
        "peer: LlamaIndex re-run with a docstore, unchanged",
        "short",
        count,
        best,
        count / best,
        f"{count / best / ceiling:.0f}x raw encode; {first_s / best:.0f}x faster than its first run ({first_s:.2f} s)",
    )


# --- whole commands ----------------------------------------------------------------------------------------------
@dataclass
class Command:
    """One whole command's wall clock and what it reported."""

    seconds: float
    report: dict[str, Any]


async def oneshot_rows(folder: Path, count: int, pairs: int) -> list[Row]:
    """`pairs` pairs of first syncs (ragsync, then the LlamaIndex script, each on a fresh folder), then each
    folder's unchanged re-sync in the same order, against a demo Coordinator serving `count` records a service."""
    async with CoordinatorServer(DemoCoordinator(count)) as coordinator:
        env = _command_env(coordinator.endpoint)
        ours = [folder / f"oneshot-ragsync-{n}" for n in range(pairs)]
        theirs = [folder / f"oneshot-llama-{n}" for n in range(pairs)]
        firsts = [
            (await _ragsync_sync(env, o, count, 0), await _peer_script(env, t, count, count))
            for o, t in zip(ours, theirs, strict=True)
        ]
        agains = [
            (await _ragsync_sync(env, o, 0, count), await _peer_script(env, t, count, 0))
            for o, t in zip(ours, theirs, strict=True)
        ]
    return _oneshot_table(count, firsts, agains)


def _command_env(endpoint: str) -> dict[str, str]:
    """The benchmark's environment for both commands: its model settings, this checkout's code, no network, and for
    ragsync the demo Coordinator, its own local broker and an embedded store (none of a deployment's servers)."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "QDRANT_URL", "QDRANT_API_KEY")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env |= {"COORDINATOR_GRPC_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return env


async def _ragsync_sync(env: dict[str, str], data_dir: Path, upserted: int, skipped: int) -> Command:
    """`ragsync sync --service payment-service --json` on `data_dir`; its run must have upserted and skipped these
    many items."""
    env = env | {"DATA_DIR": str(data_dir), "QDRANT_PATH": str(data_dir / "qdrant")}
    command = [sys.executable, "-m", "ragsync", "sync", "--service", SERVICE, "--json"]
    done = await _whole_command(command, env, data_dir.parent)
    got = {key: done.report.get(key) for key in ("items_upserted", "items_skipped", "points_in_collection")}
    expected = {"items_upserted": upserted, "items_skipped": skipped, "points_in_collection": upserted + skipped}
    if got != expected:
        raise RuntimeError(f"ragsync sync on {data_dir}: {got}, expected {expected}")
    return done


async def _peer_script(env: dict[str, str], path: Path, count: int, embedded: int) -> Command:
    """`python -m benchmarks.peer_script` on `path`; it must have embedded `embedded` documents and hold all."""
    command = [sys.executable, "-m", "benchmarks.peer_script", "--records", str(count), "--path", str(path)]
    done = await _whole_command(command, env, path.parent)
    expected = {"documents": count, "embedded": embedded, "points": count}
    if done.report != expected:
        raise RuntimeError(f"the LlamaIndex script on {path}: {done.report}, expected {expected}")
    return done


async def _whole_command(command: list[str], env: dict[str, str], cwd: Path) -> Command:
    """Run `command` from start to exit, timed; its last stdout line is its JSON report. A failure raises with the
    command's own words. `cwd` is a scratch folder, so no `.env` file of the checkout is read."""
    cwd.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
    except TimeoutError:
        raise RuntimeError(f"{' '.join(command)}: no exit within {COMMAND_TIMEOUT_S:.0f} s") from None
    finally:
        await _stopped(process)
    seconds = time.perf_counter() - started
    lines = stdout.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(
            f"{' '.join(command)} exited {process.returncode}:\n{stderr.decode()[-3000:]}\n{stdout.decode()[-1000:]}"
        )
    return Command(seconds, json.loads(lines[-1]))


async def _stopped(process: asyncio.subprocess.Process) -> None:
    """A command still running (timed out, or the benchmark interrupted) is interrupted, then killed: SIGINT, as
    Ctrl-C, lets `ragsync sync` stop the broker it started (SIGTERM would end it at once and leave the broker)."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), 15)
    except TimeoutError:
        process.kill()
        await process.wait()


def _oneshot_table(
    count: int, firsts: list[tuple[Command, Command]], agains: list[tuple[Command, Command]]
) -> list[Row]:
    """The four whole-command rows; each goal's verdict from the figures."""
    ours, theirs = [o.seconds for o, _ in firsts], [t.seconds for _, t in firsts]
    ours_again, theirs_again = [o.seconds for o, _ in agains], [t.seconds for _, t in agains]
    ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
    again_ratios = [o / t for o, t in zip(ours_again, theirs_again, strict=True)]
    return [
        _median_row(
            "one-shot: ragsync sync, whole command",
            count,
            ours,
            f"ragsync / LlamaIndex, each pair: {_listed(ratios, '.2f')}; runs {_listed(ours, '.1f')} s",
            "<= the LlamaIndex script, each pair",
            all(ratio <= 1.0 for ratio in ratios),
        ),
        _median_row("one-shot: LlamaIndex script, whole command", count, theirs, f"runs {_listed(theirs, '.1f')} s"),
        _median_row(
            "one-shot: unchanged re-sync, whole command",
            count,
            ours_again,
            f"worst {max(ours_again):.2f} s; runs {_listed(ours_again, '.2f')} s; "
            f"ragsync / LlamaIndex re-run, each pair: {_listed(again_ratios, '.2f')}",
            f"<= {RESYNC_GOAL_S:.0f} s",
            max(ours_again) <= RESYNC_GOAL_S,
        ),
        _median_row(
            "one-shot: LlamaIndex script re-run, unchanged, whole command",
            count,
            theirs_again,
            f"runs {_listed(theirs_again, '.2f')} s",
        ),
    ]


def _median_row(
    benchmark: str, count: int, seconds: list[float], versus: str, goal: str = "", met: bool | None = None
) -> Row:
    median = statistics.median(seconds)
    return Row(benchmark, "short", count, median, count / median, versus, goal, met)


def _listed(values: list[float], spec: str) -> str:
    return ", ".join(format(value, spec) for value in values)
