"""Splitting text longer than the model reads into overlapping chunks, by the model's own tokenizer."""

from __future__ import annotations

from ragsync.model.encoder import TextEncoder


class Chunker:
    """Cuts text into windows of at most the model's input length in tokens, overlapping by `overlap` tokens."""

    def __init__(self, encoder: TextEncoder, overlap: int = 32) -> None:
        self._encoder = encoder
        self._overlap = overlap
        self._limit: int | None = None  # read from the model on first use: asking it walks its modules

    def split(self, text: str) -> list[str]:
        """The chunks of `text` (one when it fits), cut at token boundaries."""
        if self._limit is None:
            self._limit = self._encoder.max_tokens
        limit = self._limit
        if len(text) <= limit:  # a word piece is at least one character: it fits without tokenizing
            return [text]
        offsets = self._encoder.token_offsets(text)
        if len(offsets) <= limit:
            return [text]
        step = max(1, limit - self._overlap)
        chunks = []
        for start in range(0, len(offsets), step):
            window = offsets[start : start + limit]
            chunks.append(text[window[0][0] : window[-1][1]])
            if start + limit >= len(offsets):
                break
        return chunks
