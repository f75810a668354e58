"""An optional variant for benchmarks/variants.py: ragsync's own fp32 ONNX export, run by OpenVINO instead of
onnxruntime. It needs only the `openvino` package (pip install openvino), not optimum-intel, whose pins would
move transformers and bring torchvision.

On CPUs with bf16 units (this one has AVX512-BF16) OpenVINO computes in bf16 unless told f32: both are measured.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ragsync.model.encoder import DEFAULT_MODEL, DEFAULT_MODEL_ID, model_path, unit_rows
from ragsync.model.onnx_backend import OnnxRunner, exported


class OpenVinoRunner(OnnxRunner):
    """OnnxRunner's tokenizing and batching, with the graph compiled by OpenVINO for the CPU (at f32, or at the
    CPU's own default precision when `f32` is False)."""

    def __init__(self, model_dir: str, onnx_file: Path, threads: int | None, f32: bool) -> None:
        self.f32 = f32  # read by `_open`, which the base class calls
        super().__init__(model_dir, onnx_file, threads)

    def _open(self, onnx_file: Path, threads: int | None) -> None:
        import openvino

        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"} if self.f32 else {}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = openvino.Core().compile_model(str(onnx_file), "CPU", config)

    def _run(self, feed: dict[str, np.ndarray[Any, np.dtype[np.int64]]]) -> Any:
        return self._compiled(feed)[0]

    @property
    def dimension(self) -> int:
        """Length of each vector, from the graph's output shape."""
        return int(self._compiled.outputs[0].get_partial_shape()[1].get_length())


class OpenVinoEncoder:
    """The default model through OpenVINO, with TextEncoder's `encode`: unit-length vectors, batched."""

    def __init__(self, batch_size: int, cache: Path, f32: bool) -> None:
        folder = model_path(DEFAULT_MODEL)
        # The onnx fp32 variant's name, so both share one cached export.
        onnx_file = exported(folder, f"{DEFAULT_MODEL_ID}@onnx-fp32", "fp32", cache)
        self._runner = OpenVinoRunner(folder, onnx_file, None, f32)
        self._batch_size = batch_size

    def encode(self, texts: list[str]) -> list[list[float]]:
        """One normalised vector per text."""
        if not texts:
            return []
        return unit_rows(self._runner.encode(texts, self._batch_size))


def openvino_encoder(batch_size: int, cache: Path, f32: bool) -> OpenVinoEncoder | None:
    """The OpenVINO variant, or None when the `openvino` package is not installed."""
    if importlib.util.find_spec("openvino") is None:
        return None
    return OpenVinoEncoder(batch_size, cache, f32)
