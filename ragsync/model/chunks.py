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
        return self.split_all([text])[0]

    def split_all(self, texts: list[str]) -> list[list[str]]:
        """The chunks of each text, as `split`; the texts that may not fit are tokenized in one call."""
        if not texts:  # asking the model's limit loads it: a batch with nothing to embed never waits for that
            return []
        if self._limit is None:
            self._limit = self._encoder.max_tokens
        limit = self._limit
        # A word piece is at least one character: a text no longer than the limit fits without tokenizing.
        longer = [index for index, text in enumerate(texts) if len(text) > limit]
        chunks = [[text] for text in texts]
        # A text up to twice the limit in characters mostly fits: its word pieces are counted first (without
        # their offsets, which cost more than the tokenizing), and only those that do not fit are cut.
        counted = [index for index in longer if len(texts[index]) <= 2 * limit]
        counts = self._encoder.token_counts([texts[index] for index in counted]) if counted else []
        fits = {index for index, count in zip(counted, counts, strict=True) if count <= limit}
        over = [index for index in longer if index not in fits]
        offsets = self._encoder.token_offsets_of([texts[index] for index in over]) if over else []
        for index, spans in zip(over, offsets, strict=True):
            if len(spans) > limit:
                chunks[index] = self._windows(texts[index], spans, limit)
        return chunks

    def _windows(self, text: str, offsets: list[tuple[int, int]], limit: int) -> list[str]:
        step = max(1, limit - self._overlap)
        chunks = []
        for start in range(0, len(offsets), step):
            window = offsets[start : start + limit]
            chunks.append(text[window[0][0] : window[-1][1]])
            if start + limit >= len(offsets):
                break
        return chunks
