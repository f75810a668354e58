"""ragsync's benchmark: every figure against the raw embedding model, on this machine, in the same run.

    make bench            # or: .venv/bin/python -m benchmarks.run [--short N] [--long N] [--shapes N] [--only STEP ...]

Prints one table and writes benchmarks/results/latest.json and latest.png (partial.* with --only). Short
records are the demo's payment-service (~40 words of text), long ones the knowledge-service articles (~200
words). The pipeline runs with the model settings of the environment (EMBEDDING_BACKEND, EMBEDDING_PRECISION,
EMBEDDING_BATCH_SIZE, ...). The peers (LlamaIndex, the plain encode-and-upsert loop) need the `bench` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console

from benchmarks.control_plane import control_rows, sweep_row
from benchmarks.peers import oneshot_rows, peer_rows
from benchmarks.pipeline import Bench
from benchmarks.related_content import related_rows
from benchmarks.report import changes, print_changes, print_table, write
from benchmarks.scale import scale_rows
from benchmarks.shapes import shape_rows
from benchmarks.stores import STORES, store_rows
from benchmarks.variants import variant_rows
from ragsync.app.application import App
from ragsync.demo.records import demo_record
from ragsync.messaging.local_broker import LocalBroker
from ragsync.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
# peers first, right after the ceilings they are compared with; oneshot last: whole commands, one process each.
STEPS = (
    "peers",
    "pipeline",
    "fetch",
    "variants",
    "scaling",
    "memory",
    "scale",
    "shapes",
    "related",
    "naive",
    "stores",
    "control",
    "oneshot",
)


async def main(args: argparse.Namespace) -> None:
    """Run the chosen steps, print the table, write the report."""
    console = Console(width=200)
    with tempfile.TemporaryDirectory() as temporary, LocalBroker() as broker:
        folder = Path(temporary)
        settings = Settings(data_dir=folder, _env_file=None)
        encoder = App(settings).encoder()
        bench = Bench(broker, encoder, folder)
        for corpus, count in (("short", args.short), ("long", args.long)):
            await bench.ceiling(corpus, count)
        steps: dict[str, Callable[[], Awaitable[None]]] = {
            "peers": lambda: _peers(bench, args.short),
            "pipeline": lambda: _pipelines(bench, args),
            "fetch": lambda: _fetches(bench, args.fetch),
            "variants": lambda: _variants(bench, args, settings.embedding_batch_size, folder / "models"),
            "scaling": lambda: bench.scaling(args.scaling),
            "memory": lambda: bench.memory(args.memory),
            "scale": lambda: _scale(bench, args.scale),
            "shapes": lambda: _shapes(bench, args.shapes),
            "related": lambda: _related(bench, args.short),
            "naive": lambda: bench.naive(args.naive),
            "stores": lambda: _stores(bench, folder, args.store_points, settings.embedder_max_batch),
            "control": lambda: _control(bench, broker.bootstrap_servers, folder, args.sweep_points),
            "oneshot": lambda: _oneshot(bench, folder, args.oneshot, args.oneshot_pairs),
        }
        failed = [name for name in args.only or STEPS if not await _step(name, steps[name], console)]
    print_table(bench.rows, console)
    print_changes(changes(bench.rows, RESULTS / "latest.json"), console)
    name = "partial" if args.only or failed else "latest"  # a partial run never replaces the full one
    write(bench.rows, vars(args), RESULTS, name)
    console.print(f"wrote {RESULTS / name}.json and {RESULTS / name}.png")
    if failed:
        raise SystemExit(f"steps that failed (their rows so far are in the table): {', '.join(failed)}")


async def _step(name: str, step: Callable[[], Awaitable[None]], console: Console) -> bool:
    """Run one step; False, with the error on one line, when it failed: the steps after it still run, and the
    rows of all of them are printed and written."""
    console.log(f"running: {name}")
    try:
        await step()
    except Exception as error:  # noqa: BLE001 - one step's failure must not lose the other steps' rows
        console.log(f"[red]step {name} failed:[/red] {type(error).__name__}: {error}")
        return False
    return True


async def _peers(bench: Bench, count: int) -> None:
    bench.rows.extend(await peer_rows(bench, count))


async def _oneshot(bench: Bench, folder: Path, count: int, pairs: int) -> None:
    bench.rows.extend(await oneshot_rows(folder / "oneshot", count, pairs))


async def _scale(bench: Bench, sizes: list[int]) -> None:
    bench.rows.extend(await scale_rows(bench, sizes))


async def _shapes(bench: Bench, count: int) -> None:
    await shape_rows(bench, count)  # its rows are added as they are made


async def _related(bench: Bench, count: int) -> None:
    bench.rows.extend(await related_rows(bench, count))


async def _pipelines(bench: Bench, args: argparse.Namespace) -> None:
    await bench.pipeline("short", args.short)
    await bench.pipeline("long", args.long)


async def _fetches(bench: Bench, count: int) -> None:
    for latency_s, page_size in ((0.0, 500), (0.05, 500), (0.0, 100)):
        await bench.fetch_stage("short", count, latency_s, page_size)


async def _variants(bench: Bench, args: argparse.Namespace, batch_size: int, cache: Path) -> None:
    corpus = bench.texts("short", args.short)
    queries = [bench.rules.text(demo_record("assessment-service", i), "assessment-service") for i in range(30)]
    bench.rows.extend(await asyncio.to_thread(variant_rows, corpus, queries, batch_size, cache))


async def _stores(bench: Bench, folder: Path, points: int, batch: int) -> None:
    for index, name in enumerate(STORES):
        bench.rows.extend(await asyncio.to_thread(store_rows, name, folder / f"store-{index}", points, batch))


async def _control(bench: Bench, bootstrap_servers: str, folder: Path, sweep_points: int) -> None:
    bench.rows.extend(await control_rows(bootstrap_servers))
    bench.rows.append(await asyncio.to_thread(sweep_row, str(folder / "sweep"), sweep_points))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", type=int, default=1000, help="short records per run")
    parser.add_argument("--long", type=int, default=300, help="long records per run")
    parser.add_argument("--fetch", type=int, default=5000, help="records for the fetch-stage run")
    parser.add_argument("--scaling", type=int, default=3000, help="records for the one- and two-consumer runs")
    parser.add_argument("--memory", type=int, nargs="+", default=[5000, 50000], help="sync sizes for peak RSS")
    parser.add_argument("--scale", type=int, nargs="+", default=[50000, 200000], help="tiny-encoder sync sizes")
    parser.add_argument("--shapes", type=int, default=100_000, help="records of each shape for the shapes step")
    parser.add_argument("--naive", type=int, default=150, help="records for the naive baseline")
    parser.add_argument("--store-points", type=int, default=100000, help="points for each embedded store")
    parser.add_argument("--sweep-points", type=int, default=1_000_000, help="points in the store the sweep runs on")
    parser.add_argument("--oneshot", type=int, default=1000, help="records of each whole-command sync")
    parser.add_argument("--oneshot-pairs", type=int, default=3, help="ragsync / LlamaIndex pairs of whole commands")
    parser.add_argument("--only", nargs="+", choices=STEPS, help="run only these steps (default: all)")
    asyncio.run(main(parser.parse_args()))
