"""The model's backends and precisions, against the real all-MiniLM-L6-v2 and a real ONNX export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragsync.errors import SetupError
from ragsync.model.encoder import DEFAULT_MODEL, ModelOptions, TextEncoder, model_path, run_modules
from ragsync.model.tokens import Feed, TokenBatches

TEXTS = [
    "refund",
    "The learner withdrew from the course in week two and asked for the fee back, which finance approved. " * 6,
    "Payment 4411 failed: the card issuer declined it for insufficient funds.",
    "Lab environment devlab-7 was rebuilt after the kernel update; students keep their files.",
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export folder for the module: each export takes seconds."""
    return tmp_path_factory.mktemp("models")


@pytest.mark.parametrize(("precision", "least_cosine"), [("fp32", 0.9999), ("int8", 0.98)])
def test_onnx_vectors_match_torch_and_padding_changes_nothing(
    encoder: TextEncoder, onnx_cache: Path, precision: str, least_cosine: float
) -> None:
    onnx = TextEncoder(ModelOptions(backend="onnx", precision=precision, cache=onnx_cache))  # type: ignore[arg-type]
    reference = np.array(encoder.encode(TEXTS))
    together = np.array(onnx.encode(TEXTS))  # one padded batch: the short texts carry padding
    alone = np.array([onnx.encode([text])[0] for text in TEXTS])
    # int8 scales activations per batch, so a batch's company moves its vectors a little; fp32 not at all.
    assert (together * alone).sum(axis=1).min() >= (0.99999 if precision == "fp32" else 0.98), (
        "padding changed a vector"
    )
    cosines = (together * reference).sum(axis=1)
    assert cosines.min() >= least_cosine, cosines
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-4)


def test_the_export_is_cached_and_reused(onnx_cache: Path) -> None:
    TextEncoder(ModelOptions(backend="onnx", precision="int8", cache=onnx_cache)).encode(["one"])
    exported = sorted(onnx_cache.glob("*int8*.onnx"))
    assert len(exported) == 1
    before = exported[0].stat().st_mtime_ns
    TextEncoder(ModelOptions(backend="onnx", precision="int8", cache=onnx_cache)).encode(["two"])
    assert exported[0].stat().st_mtime_ns == before and not list(onnx_cache.glob("*.tmp"))


def test_bf16_vectors_are_close_to_fp32(encoder: TextEncoder) -> None:
    bf16 = TextEncoder(ModelOptions(precision="bf16"))
    cosines = (np.array(bf16.encode(TEXTS)) * np.array(encoder.encode(TEXTS))).sum(axis=1)
    assert cosines.min() >= 0.99, cosines


def test_each_variant_is_its_own_model_so_a_change_re_embeds() -> None:
    names = {
        TextEncoder(ModelOptions(backend=backend, precision=precision)).name  # type: ignore[arg-type]
        for backend, precision in (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8"))
    }
    assert len(names) == 4
    assert "sentence-transformers/all-MiniLM-L6-v2" in names  # the default keeps its name and its collection


def test_a_precision_the_backend_does_not_offer_is_a_clear_error() -> None:
    with pytest.raises(SetupError, match="EMBEDDING_PRECISION='int8' is not offered with EMBEDDING_BACKEND='torch'"):
        TextEncoder(ModelOptions(backend="torch", precision="int8"))


def test_the_onnx_backend_chunks_like_torch_and_runs_without_torch(encoder: TextEncoder, onnx_cache: Path) -> None:
    onnx = TextEncoder(ModelOptions(backend="onnx", precision="fp32", cache=onnx_cache))
    assert (onnx.dimension, onnx.max_tokens) == (encoder.dimension, encoder.max_tokens) == (384, 254)
    long_text = TEXTS[1] * 4  # past both the model's 256 tokens and tokenizer.json's own 128
    assert len(onnx.token_offsets(long_text)) > 400
    assert onnx.token_offsets(long_text) == encoder.token_offsets(long_text)
    # With the export cached, a new process encodes without importing torch or sentence-transformers.
    script = (
        "import sys; from pathlib import Path; from ragsync.model.encoder import ModelOptions, TextEncoder; "
        f"e = TextEncoder(ModelOptions(backend='onnx', precision='fp32', cache=Path({str(onnx_cache)!r}))); "
        "assert len(e.encode(['refund'])[0]) == 384; "
        "print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_the_torch_model_runs_on_its_tokenizers_batches_and_gives_sentence_transformers_vectors(
    encoder: TextEncoder,
) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [*TEXTS, TEXTS[1] * 4, "  Spaced\tout  ", "Ünïcödé ✓ 日本語"]  # past 256 tokens; odd spaces; not ASCII
    library = SentenceTransformer(model_path(DEFAULT_MODEL), device="cpu")
    theirs = library.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
    ours = np.array(encoder.encode(texts))
    assert encoder.direct
    assert np.abs(ours - theirs).max() < 1e-5, np.abs(ours - theirs).max()
    alone = np.array([encoder.encode([text])[0] for text in texts])  # no padding: the same vectors
    assert np.abs(ours - alone).max() < 1e-5


@pytest.mark.parametrize("fault", ["vectors", "truncation", "failing"])
def test_a_model_the_direct_run_gets_wrong_is_encoded_by_sentence_transformers(
    encoder: TextEncoder, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    def shifted(model: object, feed: Feed) -> object:  # a model whose inputs the direct run would get wrong
        return run_modules(model, {**feed, "input_ids": np.roll(feed["input_ids"], 1, axis=1)})

    def short(tokenizer: Any, max_length: int, *rest: Any) -> TokenBatches:  # a truncation the model does not have
        return TokenBatches(tokenizer, 128, *rest)

    def failing(model: object, feed: Feed) -> object:  # modules that want inputs the direct run does not give
        raise TypeError("forward() missing 1 required positional argument: 'pixel_values'")

    reference = np.array(encoder.encode(TEXTS))
    if fault in ("vectors", "failing"):
        monkeypatch.setattr("ragsync.model.encoder.run_modules", shifted if fault == "vectors" else failing)
    else:
        monkeypatch.setattr("ragsync.model.encoder.TokenBatches", short)
    fallback = TextEncoder()
    fallback.load()
    assert not fallback.direct
    cosines = (np.array(fallback.encode(TEXTS)) * reference).sum(axis=1)
    assert cosines.min() >= 0.99999, cosines
