"""The ONNX backend: the model exported once to ONNX (fp32, or int8 with per-channel weights), run by
onnxruntime. Mean pooling is part of the exported graph; the encoder normalises, as for every backend.

The export needs torch and happens on first use; the file is cached under DATA_DIR/models, named after the model,
the precision and the weights it came from, so a changed model folder is exported again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

from ragsync.errors import SetupError
from ragsync.model.tokens import Feed, TokenBatches, Vectors

log = logging.getLogger(__name__)
OPSET = 17
GRAPH = "mean-pooled, not normalised"  # part of the cache key: a changed graph is exported again


class OnnxRunner:
    """Encodes texts with an onnxruntime session; batches are padded only to their own longest text.

    Needs neither torch nor sentence-transformers: the tokenizer comes from the model folder's tokenizer.json.
    """

    def __init__(self, model_dir: str, onnx_file: Path, threads: int | None) -> None:
        from tokenizers import Tokenizer

        folder = Path(model_dir)
        for needed in ("tokenizer.json", "sentence_bert_config.json"):
            if not (folder / needed).exists():
                raise SetupError(f"EMBEDDING_BACKEND=onnx needs {folder / needed}; use EMBEDDING_BACKEND=torch")
        self.max_length = int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
        self._batches = TokenBatches(Tokenizer.from_file(str(folder / "tokenizer.json")), self.max_length)
        self._open(onnx_file, threads)

    def _open(self, onnx_file: Path, threads: int | None) -> None:
        """Load the graph into the engine that runs it: here an onnxruntime session."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])

    def _run(self, feed: Feed) -> Any:
        """The graph's pooled output for one batch."""
        return self._session.run(None, feed)[0]

    @property
    def dimension(self) -> int:
        """Length of each vector, from the graph's output shape."""
        return int(self._session.get_outputs()[0].shape[1])

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """The character span of each word piece of `text` (no special tokens, no truncation)."""
        return self._batches.token_offsets(text)

    def token_offsets_of(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """`token_offsets` of each text, tokenized in one call."""
        return self._batches.token_offsets_of(texts)

    def token_counts(self, texts: list[str]) -> list[int]:
        """The number of word pieces of each text, tokenized in one call."""
        return self._batches.token_counts(texts)

    def encode(self, texts: list[str], batch_size: int) -> Vectors:
        """Pooled vectors for `texts`, in order."""
        return self._batches.encode(texts, batch_size, self._run)


def exported(model_dir: str, name: str, precision: str, cache: Path) -> Path:
    """The model's ONNX file at `precision` (fp32 or int8), exported and quantized on first use."""
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in Path(model_dir).iterdir() if f.is_file())
    fingerprint = hashlib.sha256(repr((name, GRAPH, OPSET, files)).encode()).hexdigest()
    target = cache / f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}-{fingerprint[:12]}.onnx"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    log.warning("exporting %s to ONNX (%s) at %s: once per model", name, precision, target)
    fp32 = cache / f"{target.stem}.fp32.{os.getpid()}.tmp"
    _export_fp32(model_dir, fp32)
    aside = cache / f"{target.stem}.{os.getpid()}.tmp"
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(aside), per_channel=True, weight_type=QuantType.QInt8)
        fp32.unlink()
    else:
        fp32.rename(aside)
    # Renamed into place: several processes sharing DATA_DIR never read a half-written file.
    os.replace(aside, target)
    return target


def _export_fp32(model_dir: str, path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    transformer: Any = SentenceTransformer(model_dir, device="cpu")[0].auto_model
    transformer.eval()

    class Pooled(torch.nn.Module):
        """The transformer and mean pooling over real tokens (padding excluded)."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer  # a submodule, so its weights export as weights

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return pooled

    sample = torch.ones((2, 8), dtype=torch.int64)
    # A padded row in the sample: traced with no padding, the graph could drop the attention mask.
    mask = torch.tensor([[1] * 8, [1] * 3 + [0] * 5], dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"embedding": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about shape checks it freezes; the padded sample above and the tests cover them.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(),
            (sample, mask, torch.zeros_like(sample)),
            str(path),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
