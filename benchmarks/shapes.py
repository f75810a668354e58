"""The pipeline on records of three shapes, against the encoder's own speed on the same texts, and what it costs
besides encoding and the store.

    short: about 10 words; platform-like: about 45 words with accents, CJK and emoji; long: about 200 words, cut
    into chunks by the model's input length.

Each shape's records are generated here (seeded, the same every run) and served by the demo Coordinator. They go
through the real stages (broker, fetcher, one embedder process, embedded store) with the tiny random encoder of
`benchmarks.tiny_encoder`, once with EMBEDDING_PROCESS off and once on, each against that encoder's own items/s on
the same texts (its chunks, for long records) in a process of its own, one model thread on both sides.

Then a zero-cost encoder (vectors picked by a hash of the text, defined here only) runs the same pipeline on
platform-like records: what is left is the pipeline's own cost, compared with qdrant-edge's own upsert rate for the
same points, in a process of its own. The same sync is timed again with the embedder alone: stopped until the
fetcher has put every item on the topic, then draining it. A last one runs under py-spy, whose samples give each
step's CPU per item: the headroom a GPU needs.

    python -m benchmarks.shapes embedder          # an embedder process with the zero-cost encoder (run by the step)
    python -m benchmarks.shapes store ARGS_JSON   # the store alone (run by the step)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.consumers import raw_encode_rate, timed_sync
from benchmarks.pipeline import Bench
from benchmarks.report import Row
from benchmarks.tiny_encoder import build
from ragsync.demo.records import Generator, demo_record
from ragsync.model.encoder import ModelOptions, TextEncoder, unit
from ragsync.model.placement import DECIDED
from ragsync.model.tokens import Vectors
from ragsync.settings import Settings

GOAL = 0.6  # of the encoder's own items/s; and of the store's own upsert rate, with the zero-cost encoder
ENCODES = 3  # timed encodes of the shape's texts before its syncs, and as many after
ENCODED_ITEMS = 5000  # items whose texts the encoder is timed on
WRITE_SLICE = 256  # points a store-alone upsert writes, as the embedder's slices do
HASH_DIMENSION = 384  # the zero-cost encoder's vectors: the length of all-MiniLM-L6-v2's, the model a GPU would run
PROFILE_HZ = 250  # py-spy's samples a second
PY_SPY = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def _words(text: str) -> list[str]:
    return text.split()


WORDS = _words(
    "course refund learner payment module review quiz grade invoice session mentor lesson certificate schedule "
    "deadline feedback project exercise forum account transfer enrollment discount receipt workshop lecture "
    "assignment campus syllabus tutor"
)
# Platform-like text: the words a multilingual platform's records hold, with accents, CJK and emoji among them.
NON_ASCII = _words(
    "café naïve résumé Zürich São Paulo façade jalapeño Ålesund Kraków Škoda Ñandú crème brûlée "
    "東京 学習 支払い 返金 講座 数据 課題 서울 강의 결제 Москва оплата курс 🙂 🚀 ✅ 📚 🎓 💳"
)
NAMES = [
    "Zoë Müller",
    "José Álvarez",
    "Łukasz Wójcik",
    "Ana Conceição",
    "Søren Ødegård",
    "佐藤 花子",
    "김 민준",
    "Ilya Петров",
]
STATUSES = ["completed", "refunded", "failed", "pending", "disputed"]
# Long text: words that the tokenizer cuts into several pieces, so ~200 words pass the tiny encoder's 254 tokens.
LONG_WORDS = _words(
    "idempotency rebalancing deduplication checkpointing backpressure serialisation throughput partitioning "
    "replication consistency orchestration observability provisioning quantisation tokenisation embeddings "
    "the a of and to in for with on that learners course module practice review"
)


def _short(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "id": f"s-{i:07d}",
        "title": f"{rng.choice(WORDS)} {rng.choice(WORDS)}",
        "status": rng.choice(STATUSES),
        "note": " ".join(rng.choice(WORDS) for _ in range(4)),
    }


def _platform(i: int, rng: random.Random) -> dict[str, Any]:
    def words(count: int) -> str:
        return " ".join(rng.choice(NON_ASCII) if rng.random() < 0.3 else rng.choice(WORDS) for _ in range(count))

    return {
        "id": f"p-{i:07d}",
        "customer": {"name": rng.choice(NAMES), "city": rng.choice(NON_ASCII)},
        "status": rng.choice(STATUSES),
        "amount": round(rng.uniform(9, 499), 2),
        "currency": rng.choice(["EUR", "JPY", "KRW", "BRL"]),
        "description": words(27),
        "tags": [words(1) for _ in range(3)],
    }


def _long(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "id": f"l-{i:07d}",
        "title": " ".join(rng.choice(WORDS) for _ in range(5)),
        "author": rng.choice(NAMES),
        "body": " ".join(rng.choice(LONG_WORDS) for _ in range(190)),
    }


SHAPES: dict[str, tuple[str, Generator]] = {  # shape: (its service, its generator)
    "short": ("shape-short", _short),
    "platform-like": ("shape-platform", _platform),
    "long": ("shape-long", _long),
}
GENERATORS: dict[str, Generator] = dict(SHAPES.values())


class HashEncoder(TextEncoder):
    """A zero-cost encoder: each text's vector is one of 4,096 fixed unit vectors, picked by a hash of the text. It
    keeps the tiny encoder's tokenizer, which the chunker cuts long texts by."""

    def __init__(self, options: ModelOptions) -> None:
        super().__init__(options)
        self.name = f"hash-{HASH_DIMENSION}"
        self._rows = unit(np.random.default_rng(0).standard_normal((4096, HASH_DIMENSION)))

    @property
    def dimension(self) -> int:
        return HASH_DIMENSION

    def vectors(self, texts: list[str]) -> Vectors:
        return self._rows[[zlib.crc32(text.encode("utf-8", "surrogatepass")) & 4095 for text in texts]]

    async def encode_async(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts)  # on the event loop: no model thread to hand it to


async def shape_rows(bench: Bench, count: int) -> None:
    """For each shape, a row per EMBEDDING_PROCESS mode (off, on, and auto with the mode its rule chose) and a row
    of memory at a quarter of the records and at all of them; then the zero-cost encoder's rows. Each row is added
    to `bench.rows` as soon as it is measured."""
    model = await asyncio.to_thread(build, bench.folder / "tiny-encoder")
    tiny = TextEncoder(ModelOptions(name=str(model)))
    for shape, (service, _) in SHAPES.items():
        records = [demo_record(service, i, generators=GENERATORS) for i in range(ENCODED_ITEMS)]
        texts = [bench.rules.text(record, service) for record in records]
        chunks = await asyncio.to_thread(_chunked, tiny, texts)
        words = sum(len(text.split()) for text in texts) / len(texts)
        corpus = f"{shape} (~{words:.0f} words, {len(chunks) / len(texts):.2f} chunks an item)"
        settings = bench.settings(batch_sync_services=[service], embedding_model=str(model))
        raws = [await asyncio.to_thread(raw_encode_rate, settings, chunks, 1, ENCODES)]
        runs = {mode: await _mode_sync(bench, settings, mode, count, service) for mode in MODES}
        raws.append(await asyncio.to_thread(raw_encode_rate, settings, chunks, 1, ENCODES))
        per_item = len(texts) / len(chunks)  # the encoder's texts/s into items/s: over an item's chunks
        encoder = ShapeEncoder(max(raws) * per_item, raws[0] * per_item, raws[1] * per_item)
        store = await asyncio.to_thread(_store_alone, shape, count, 64, model)
        for mode, run in runs.items():
            bench.rows.append(_mode_row(mode, run, runs, encoder, store, corpus, count))
        quarter = await _mode_sync(bench, settings, "auto", count // 4, service)
        store_quarter = await asyncio.to_thread(_store_alone, shape, count // 4, 64, model)
        bench.rows.append(_memory_row(corpus, count, (quarter, store_quarter), (runs["auto"], store)))
    await _hash_rows(bench, count, model, bench.rows)


MODES = ("off", "on", "auto")
# Two modes within this share of each other are as fast as the run-to-run spread tells apart: auto's rule may pick
# either (the spread of the same sync run twice here is 3-8 %).
SAME_SPEED = 0.05


@dataclass(frozen=True)
class ShapeEncoder:
    """The tiny encoder's own items/s on a shape's texts: the fastest of all its encodes, and those before and after
    the syncs."""

    rate: float
    before: float
    after: float


@dataclass(frozen=True)
class ModeRun:
    """One timed sync of a shape: its seconds, the embedder's memory peaks, and (auto) where its model ran."""

    seconds: float
    peaks: dict[str, float]
    placement: str

    def rate(self, count: int) -> float:
        return count / self.seconds


async def _mode_sync(bench: Bench, settings: Settings, mode: str, count: int, service: str) -> ModeRun:
    settings = settings.model_copy(update={"embedding_process": mode})
    with _sync_folder(bench) as folder:
        seconds, [peaks] = await timed_sync(
            settings, folder, count, 1, threads=1, service=service, generators=GENERATORS
        )
        return ModeRun(seconds, peaks, _placement(folder) if mode == "auto" else mode)


@contextlib.contextmanager
def _sync_folder(bench: Bench) -> Iterator[Path]:
    """A folder for one timed sync's components and store, removed after it: the stores of 100,000s of points add
    up."""
    folder = bench.folder / uuid.uuid4().hex[:8]
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _placement(folder: Path) -> str:
    """Where EMBEDDING_PROCESS=auto ran the model, from the embedder's log: `on` (its own process), `off` (the
    embedder's), or `undecided` (too few texts to decide)."""
    for line in (folder / "embedder-0.log").read_text(errors="replace").splitlines():
        if DECIDED in line:
            return "on" if f"{DECIDED}its own process" in line else "off"
    return "undecided"


def _mode_row(
    mode: str,
    run: ModeRun,
    runs: dict[str, ModeRun],
    encoder: ShapeEncoder,
    store: dict[str, float],
    corpus: str,
    count: int,
) -> Row:
    rate, peaks = run.rate(count), run.peaks
    faster = max(("off", "on"), key=lambda other: runs[other].rate(count))
    versus = (
        f"{rate / encoder.rate:.2f} of the encoder's own {encoder.rate:.0f} items/s (fastest of {ENCODES} encodes "
        f"before the syncs: {encoder.before:.0f}/s, after: {encoder.after:.0f}/s); "
    )
    goal, met = f">= {GOAL} of the encoder", rate / encoder.rate >= GOAL
    if mode == "auto":
        chosen = runs[run.placement].rate(count) if run.placement in ("on", "off") else 0.0
        picked = chosen >= (1 - SAME_SPEED) * runs[faster].rate(count)
        versus += (
            f"its rule chose {run.placement}; the faster mode: {faster} ({runs[faster].rate(count):.0f}/s against "
            f"{runs['on' if faster == 'off' else 'off'].rate(count):.0f}/s); "
        )
        goal += f", and picks the faster mode (or one within {SAME_SPEED:.0%} of it)"
        met = met and picked
    else:
        other = runs["on" if mode == "off" else "off"]
        versus += f"{rate / other.rate(count):.2f}x the other mode{' (the faster)' if mode == faster else ''}; "
    versus += (
        f"peak RSS {peaks['VmHWM']:.0f} MB: heap {peaks['RssAnon']:.0f} MB (the store's points alone "
        f"{store['heap_mb']:.0f} MB, the rest {peaks['RssAnon'] - store['heap_mb']:.0f} MB), mapped files "
        f"{peaks['RssFile']:.0f} MB; the model's process {peaks['children']:.0f} MB"
    )
    return Row(f"shapes: tiny encoder, EMBEDDING_PROCESS={mode}", corpus, count, run.seconds, rate, versus, goal, met)


# The embedder's heap besides the store's points may grow this much from a quarter of the records to all of them:
# what a batch holds varies with its size (about a second of records), not with the records synced.
MEMORY_SLACK = 1.15


def _memory_row(
    corpus: str, count: int, quarter: tuple[ModeRun, dict[str, float]], whole: tuple[ModeRun, dict[str, float]]
) -> Row:
    """The embedder's heap less the store's points at a quarter of the records and at all of them (auto)."""
    (small, small_store), (large, large_store) = quarter, whole
    rests = [run.peaks["RssAnon"] - store["heap_mb"] for run, store in (quarter, whole)]
    versus = (
        f"{count // 4} records: peak RSS {small.peaks['VmHWM']:.0f} MB, heap {small.peaks['RssAnon']:.0f} MB of "
        f"which the store's points {small_store['heap_mb']:.0f} MB, the rest {rests[0]:.0f} MB; {count} records: "
        f"peak RSS {large.peaks['VmHWM']:.0f} MB, heap {large.peaks['RssAnon']:.0f} MB of which the store's points "
        f"{large_store['heap_mb']:.0f} MB, the rest {rests[1]:.0f} MB"
    )
    goal = f"the rest grows at most {MEMORY_SLACK - 1:.0%}"
    return Row(
        "shapes: memory (auto)", corpus, count, large.seconds, 0.0, versus, goal, rests[1] <= MEMORY_SLACK * rests[0]
    )


async def _sync(
    bench: Bench,
    settings: Settings,
    count: int,
    service: str,
    watch: Callable[[list[int]], contextlib.AbstractContextManager[object]] | None = None,
    drain: bool = False,
) -> tuple[float, list[dict[str, float]]]:
    """A timed sync of `count` records through the zero-cost encoder's embedder, in a folder removed after it
    (`drain`: the embedder timed alone, on a topic filled first; see `timed_sync`)."""
    with _sync_folder(bench) as folder:
        return await timed_sync(
            settings,
            folder,
            count,
            1,
            threads=1,
            service=service,
            generators=GENERATORS,
            module="benchmarks.shapes",
            env=_benchmarks_on_path(bench.folder),
            watch=watch,
            drain=drain,
        )


def _benchmarks_on_path(folder: Path) -> dict[str, str]:
    """The environment that lets an embedder process (run in a folder of its own) import this package: a folder
    holding only a link to it (the repository's root would also put its top-level `proto` before proto-plus's)."""
    path = folder / "benchmarks-path"
    if not path.exists():
        path.mkdir()
        (path / "benchmarks").symlink_to(Path(__file__).resolve().parent)
    return {"PYTHONPATH": str(path)}


def _chunked(encoder: TextEncoder, texts: list[str]) -> list[str]:
    from ragsync.model.chunks import Chunker

    chunker = Chunker(encoder)
    return [chunk for text in texts for chunk in chunker.split(text)]


async def _hash_rows(bench: Bench, count: int, model: Path, rows: list[Row]) -> None:
    """The zero-cost encoder through the pipeline on platform-like records, against the store alone; then a second
    sync under py-spy, for each step's CPU per item."""
    shape = "platform-like"
    service = SHAPES[shape][0]
    store = await asyncio.to_thread(_store_alone, shape, count, HASH_DIMENSION, model)
    settings = bench.settings(batch_sync_services=[service], embedding_model=str(model))
    seconds, [peaks] = await _sync(bench, settings, count, service)
    rate, store_rate = count / seconds, count / store["upsert_s"]
    corpus = f"{shape}, {HASH_DIMENSION}-d"
    rows.extend(
        [
            Row(
                "shapes: store alone (qdrant-edge), the same points",
                corpus,
                count,
                store["upsert_s"],
                store_rate,
                f"{WRITE_SLICE} points an upsert, only the upserts timed; its heap {store['heap_mb']:.0f} MB",
            ),
            Row(
                "shapes: zero-cost encoder (a hash), one embedder process",
                corpus,
                count,
                seconds,
                rate,
                f"{rate / store_rate:.2f} of the store's own upsert rate; peak RSS {peaks['VmHWM']:.0f} MB: heap "
                f"{peaks['RssAnon']:.0f} MB (the store's points alone {store['heap_mb']:.0f} MB, the rest "
                f"{peaks['RssAnon'] - store['heap_mb']:.0f} MB)",
                f">= {GOAL} of the store alone",
                rate / store_rate >= GOAL,
            ),
        ]
    )
    rows.append(await _drained_row(bench, settings, count, store_rate))
    if PY_SPY is None:
        rows.append(Row("shapes: zero-cost encoder, per item by step", corpus, count, 0.0, 0.0, "py-spy not found"))
        return
    profile = bench.folder / f"profile-{uuid.uuid4().hex[:8]}.txt"
    try:
        profiled_s, _ = await _sync(bench, settings, count, service, watch=lambda pids: sampled(pids[0], profile))
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:  # the rows so far are kept
        rows.append(Row("shapes: zero-cost encoder, per item by step", corpus, count, 0.0, 0.0, f"failed: {error}"))
        return
    steps = by_step(profile)
    sampled_s = sum(steps.values()) / PROFILE_HZ
    for step, samples in sorted(steps.items(), key=lambda kv: -kv[1]):
        cpu_s = samples / PROFILE_HZ
        rows.append(
            Row(
                f"shapes: zero-cost encoder, per item: {step}",
                corpus,
                count,
                cpu_s,
                0.0,
                f"{cpu_s / count * 1e6:.1f} µs of CPU an item, {cpu_s / sampled_s:.0%} of the embedder's "
                f"(a sync under py-spy at {PROFILE_HZ} Hz: {profiled_s / count * 1e6:.0f} µs an item of wall "
                f"time, {sampled_s / count * 1e6:.0f} µs of CPU over its threads)",
            )
        )


async def _drained_row(bench: Bench, settings: Settings, count: int, store_rate: float) -> Row:
    """The zero-cost encoder's embedder alone, on a topic the fetcher filled first: the fetcher, the Coordinator and
    the embedder no longer share this machine's cores while it is timed."""
    # The embedder is stopped while the topic fills: its session outlasts that, so the group never rebalances (at
    # most 60 s: the fetcher's faust refuses a session longer than its requests' 90 s timeout).
    drain_settings = settings.model_copy(update={"kafka_session_timeout_ms": 60_000})
    seconds, [peaks] = await _sync(bench, drain_settings, count, settings.batch_sync_services[0], drain=True)
    rate = count / seconds
    return Row(
        "shapes: zero-cost encoder, the embedder alone (topic filled first)",
        f"platform-like, {HASH_DIMENSION}-d",
        count,
        seconds,
        rate,
        f"{rate / store_rate:.2f} of the store's own upsert rate; peak RSS {peaks['VmHWM']:.0f} MB",
        f">= {GOAL} of the store alone",
        rate / store_rate >= GOAL,
    )


@contextlib.contextmanager
def sampled(pid: int, output: Path) -> Iterator[None]:
    """py-spy samples the process's stacks (every thread not idle) while the block runs, into `output` (its
    collapsed stacks, one line and a count per distinct stack)."""
    assert PY_SPY is not None
    command = [PY_SPY, "record", "--pid", str(pid), "--rate", str(PROFILE_HZ), "--nonblocking"]
    spy = subprocess.Popen(
        [*command, "--format", "raw", "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        time.sleep(1.0)  # attached before the clock starts
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        _, errors = spy.communicate(timeout=60)
        if not output.exists():
            raise RuntimeError(f"py-spy wrote no profile: {errors.decode(errors='replace')[-2000:]}")


# Steps of a batch, by the functions a stack passes through (name, a part of its file's path), in priority order:
# a stack is the first step any of its frames belongs to, so a step nested in another (point ids in the payload,
# the payload in the triage) is counted as itself.
STEPS: list[tuple[str, tuple[tuple[str, str], ...]]] = [
    ("commit", (("_commit", "streams/embedder.py"),)),
    ("run state", (("_report", "streams/embedder.py"), ("", "ragsync/runstate/"))),
    ("decode", (("decode", "messaging/delivery.py"), ("decode_value", "messaging/delivery.py"))),
    ("point ids", (("point_id", "store/base.py"), ("first_point", "streams/embedder.py"))),
    ("store", (("", "ragsync/store/"),)),
    (
        "encode (the hash, as lists)",
        (("encode_async", "shapes.py"), ("vectors", "shapes.py"), ("encode", "encoder.py")),
    ),
    ("payload", (("_point", "streams/embedder.py"), ("storable", "ragsync/items.py"), ("_storable", "items.py"))),
    ("chunk (tokenizing for the chunker)", (("_chunk", "streams/embedder.py"), ("", "model/chunks.py"))),
    ("content hash", (("content_hash", "streams/embedder.py"),)),
    ("triage (text, sorting)", (("_triage", "streams/embedder.py"), ("_latest", "streams/embedder.py"))),
    ("Kafka client (poll, fetch, decompress)", (("", "aiokafka/"),)),
    ("metrics", (("", "prometheus_client/"), ("", "ragsync/operations/metrics"))),
    ("asyncio (the event loop)", (("", "asyncio/"),)),
]


def by_step(profile: Path) -> dict[str, int]:
    """Samples of py-spy's collapsed stacks (`frame;frame;... count`) per step of `STEPS`, `other` for the rest."""
    counts: collections.Counter[str] = collections.Counter()
    for line in profile.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        frames = stack.split(";")
        counts[_step_of(frames)] += int(number)
    return dict(counts)


def _step_of(frames: list[str]) -> str:
    parsed = []
    for frame in frames:  # "function (path/to/file.py:line)", a method's function as "Class.method"
        name, _, where = frame.partition(" (")
        parsed.append((name.rpartition(".")[2], where))
    for step, rules in STEPS:
        for function, path in rules:
            if any((not function or name == function) and path in where for name, where in parsed):
                return step
    return "other"


def _store_alone(shape: str, count: int, dimension: int, model: Path) -> dict[str, float]:
    """The shape's points, as the embedder writes them, upserted into a store alone in a process of its own: the
    seconds its upserts took and the heap it added."""
    arguments = json.dumps({"shape": shape, "count": count, "dimension": dimension, "model": str(model)})
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.shapes", "store", arguments], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the store-alone measurement failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _heap_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("RssAnon")).split()[1]) / 1024


def _store_main(arguments: dict[str, Any]) -> None:
    from ragsync.items import ItemRules
    from ragsync.model.chunks import Chunker
    from ragsync.store import Point, point_id
    from ragsync.store.edge_store import EdgeStore

    shape, count, dimension = arguments["shape"], arguments["count"], arguments["dimension"]
    service = SHAPES[shape][0]
    rules = ItemRules()
    chunker = Chunker(TextEncoder(ModelOptions(name=arguments["model"])))
    chunker.split("warm up " * 300)  # the tokenizer loaded before the heap is measured
    rows = unit(np.random.default_rng(0).standard_normal((4096, dimension))).tolist()
    store = EdgeStore.open(Path(tempfile.mkdtemp()), "c")
    store.ensure_collection(dimension, "m")
    start, upsert_s, index = _heap_mb(), 0.0, 0
    while index < count:
        points: list[Point] = []
        while len(points) < WRITE_SLICE and index < count:
            record = demo_record(service, index, generators=GENERATORS)
            content = rules.content(record, service)
            texts = chunker.split(content.text)
            for chunk, text in enumerate(texts):
                payload = {
                    "tenant_id": "t",
                    "service": service,
                    "item_id": record["id"],
                    "chunk": chunk,
                    "chunks": len(texts),
                    "text": text,
                    "content_hash": "0" * 32,
                    "run_id": "r" * 32,
                    "generation": "r" * 32,
                    "touched_at": 1.0,
                    "model": "m",
                    "synced_at": record["updated_at"],
                    "record": content.payload,
                }
                points.append(Point(point_id("t", service, record["id"], chunk), rows[index & 4095], payload))
            index += 1
        started = time.perf_counter()
        store.upsert(points)
        upsert_s += time.perf_counter() - started
    heap = _heap_mb() - start
    store.close()
    print(json.dumps({"upsert_s": upsert_s, "heap_mb": heap}))


def _embedder_main() -> None:
    """`ragsync embedder` with the zero-cost encoder, until SIGINT or SIGTERM."""
    from ragsync.app import options
    from ragsync.app.application import App
    from ragsync.settings import Settings

    app = App(Settings())
    encoder = HashEncoder(options.model(app.settings))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await app.run_embedders(stop, 1, encoder=encoder, serve_ops=True)

    asyncio.run(run())


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "embedder": lambda _: _embedder_main(),
    "store": lambda argv: _store_main(json.loads(argv[0])),
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](sys.argv[2:])
