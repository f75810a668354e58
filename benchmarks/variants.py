"""Each backend and precision of the model: its speed against the raw fp32 model, and what it costs in quality
(cosine similarity to the fp32 vectors, and how many of each query's top 10 stay the top 10).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from benchmarks.openvino_variant import openvino_encoder
from benchmarks.report import Row
from ragsync.model.encoder import Backend, ModelOptions, Precision, TextEncoder

VARIANTS: list[tuple[Backend, Precision]] = [("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8")]


class Encoder(Protocol):
    """What a variant must offer: TextEncoder's `encode`."""

    def encode(self, texts: list[str]) -> list[list[float]]: ...


def variant_rows(corpus: list[str], queries: list[str], batch_size: int, cache: Path) -> list[Row]:
    """One row per variant, measured on `corpus` (best of three) and judged with `queries`."""
    reference: np.ndarray | None = None
    reference_top: np.ndarray | None = None
    fp32_rate = 0.0
    rows = []
    for label, encoder in _encoders(batch_size, cache):
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
                f"model: {label}",
                "short",
                len(corpus),
                seconds,
                rate,
                f"{rate / fp32_rate:.2f}x fp32; cosine {cosines.mean():.4f} (min {cosines.min():.4f}); "
                f"top-10 overlap {overlap:.0%}",
            )
        )
    return rows


def _encoders(batch_size: int, cache: Path) -> Iterator[tuple[str, Encoder]]:
    """Each variant's label and encoder, torch fp32 (the reference) first; each is made as its turn comes."""
    for backend, precision in VARIANTS:
        yield (
            f"{backend} {precision}",
            TextEncoder(ModelOptions(batch_size=batch_size, backend=backend, precision=precision, cache=cache)),
        )
    for label, f32 in (("openvino fp32", True), ("openvino, the CPU's default precision", False)):
        openvino = openvino_encoder(batch_size, cache, f32)
        if openvino is None:
            print(f"model: {label} skipped: the `openvino` package is not installed (pip install openvino)")
        else:
            yield label, openvino


def _timed(encoder: Encoder, texts: list[str]) -> float:
    started = time.perf_counter()
    encoder.encode(texts)
    return time.perf_counter() - started


def _top10(queries: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
