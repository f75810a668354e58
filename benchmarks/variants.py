"""Each backend and precision of the model: its speed against the raw fp32 model, and what it costs in quality
(cosine similarity to the fp32 vectors, and how many of each query's top 10 stay the top 10).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.report import Row
from ragsync.model import Backend, Precision, TextEncoder

VARIANTS: list[tuple[Backend, Precision]] = [("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8")]


def variant_rows(corpus: list[str], queries: list[str], batch_size: int, cache: Path) -> list[Row]:
    """One row per variant, measured on `corpus` (best of three) and judged with `queries`."""
    reference: np.ndarray | None = None
    reference_top: np.ndarray | None = None
    fp32_rate = 0.0
    rows = []
    for backend, precision in VARIANTS:
        encoder = TextEncoder(batch_size=batch_size, backend=backend, precision=precision, cache=cache)
        encoder.encode(corpus[:32])  # load, export if needed, warm up
        seconds = min(_timed(encoder, corpus) for _ in range(3))
        vectors = np.array(encoder.encode(corpus))
        top = _top10(np.array(encoder.encode(queries)), vectors)
        if reference is None or reference_top is None:
            reference, reference_top, fp32_rate = vectors, top, len(corpus) / seconds
        cosines = (vectors * reference).sum(axis=1)
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, reference_top, strict=True)])
        rate = len(corpus) / seconds
        rows.append(
            Row(
                f"model: {backend} {precision}",
                "short",
                len(corpus),
                seconds,
                rate,
                f"{rate / fp32_rate:.2f}x fp32; cosine {cosines.mean():.4f} (min {cosines.min():.4f}); "
                f"top-10 overlap {overlap:.0%}",
            )
        )
    return rows


def _timed(encoder: TextEncoder, texts: list[str]) -> float:
    started = time.perf_counter()
    encoder.encode(texts)
    return time.perf_counter() - started


def _top10(queries: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
