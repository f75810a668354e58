"""Texts into a model's inputs, a batch at a time: tokenized by the `tokenizers` library in one call per batch,
texts batched by length to cut padding. The library runs in Rust with the GIL released, so the process's other
threads run meanwhile. Every backend that runs a model on token ids uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

Feed = dict[str, np.ndarray[Any, np.dtype[np.int64]]]
Vectors = np.ndarray[Any, np.dtype[np.float32]]
# A model's input name -> the field of a tokenizers `Encoding` it is read from.
INPUTS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


class TokenBatches:
    """Cuts texts into batches of model inputs and runs a model over them, keeping the texts' order."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        max_length: int,
        inputs: tuple[str, ...] = tuple(INPUTS),
        pad: tuple[int, str] = (0, "[PAD]"),
    ) -> None:
        """`tokenizer` is copied twice: its file may carry a truncation and padding of its own (this model's: 128,
        fixed), and a library's tokenizer has both set by each of its calls."""
        from tokenizers import Tokenizer

        self._words = Tokenizer.from_str(tokenizer.to_str())  # whole texts, for chunking
        self._words.no_truncation()
        self._words.no_padding()
        self._batches = Tokenizer.from_str(tokenizer.to_str())
        self._batches.enable_truncation(max_length)
        self._batches.enable_padding(pad_id=pad[0], pad_token=pad[1])  # to the longest text of each batch
        self._inputs = inputs

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """The character span of each word piece of `text` (no special tokens, no truncation)."""
        return [(int(a), int(b)) for a, b in self._words.encode(text, add_special_tokens=False).offsets]

    def token_offsets_of(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """`token_offsets` of each text, in one call of the library (in Rust, the GIL released)."""
        encodings: list[Encoding] = self._words.encode_batch(texts, add_special_tokens=False)
        return [list(encoding.offsets) for encoding in encodings]

    def token_counts(self, texts: list[str]) -> list[int]:
        """The number of word pieces of each text, in one call without offsets: what the chunker asks of most
        texts, which fit (their offsets, a tuple a word piece, cost more than the tokenizing)."""
        encodings: list[Encoding] = self._words.encode_batch_fast(texts, add_special_tokens=False)
        return [len(encoding) for encoding in encodings]

    def encode(self, texts: list[str], batch_size: int, run: Callable[[Feed], Any]) -> Vectors:
        """`run`'s row for each text, in the texts' order; `run` takes one batch of inputs."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[Any] = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            for index, vector in zip(chosen, run(self.inputs([texts[i] for i in chosen])), strict=True):
                vectors[index] = vector
        return np.asarray(vectors, dtype=np.float32)

    def inputs(self, texts: list[str]) -> Feed:
        """One batch of model inputs for `texts`, padded to the longest."""
        encodings: list[Encoding] = self._batches.encode_batch_fast(texts)  # no offsets: 20 % faster
        return {name: np.array([getattr(e, INPUTS[name]) for e in encodings], dtype=np.int64) for name in self._inputs}
