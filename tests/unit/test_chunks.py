"""Cutting texts into chunks: one call of the tokenizer for a part of a batch gives what one call a text gave."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.models import WordPiece
from tokenizers.pre_tokenizers import BertPreTokenizer

from ragsync.model.chunks import Chunker
from ragsync.model.tokens import TokenBatches
from tests.unit.doubles import HashingEncoder


def _texts() -> list[str]:
    # Under the limit in characters; under twice it (counted, then kept whole); over it (cut by offsets); ...
    return ["short", "word " * 20, "word " * 40, " ".join(f"w{i}" for i in range(150)), "", "Ünïcödé ✓ 日本語 " * 30]


def test_texts_tokenized_together_are_cut_as_each_alone(tmp_path: Path) -> None:
    chunker = Chunker(HashingEncoder(tmp_path), overlap=8)  # 64 tokens a chunk, a word a token
    together = chunker.split_all(_texts())
    assert together == [chunker.split(text) for text in _texts()]
    assert together[:3] == [["short"], ["word " * 20], ["word " * 40]]  # 40 words fit, though over 64 characters
    long = together[3]
    assert len(long) == 3 and long[0].split()[-8:] == long[1].split()[:8]  # overlapping by 8 tokens
    assert long[-1].endswith("w149")


def test_a_batch_of_offsets_is_each_texts_offsets() -> None:
    vocab = {"[UNK]": 0, "[PAD]": 1, "word": 2, "##s": 3, "日": 4}
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = BertPreTokenizer()
    batches = TokenBatches(tokenizer, 4)  # the truncation of the model's batches never cuts the chunker's offsets
    texts = ["words word 日", "unknown words " * 5, ""]
    assert batches.token_offsets_of(texts) == [batches.token_offsets(text) for text in texts]
    assert len(batches.token_offsets_of(texts)[1]) == 15
    assert batches.token_counts(texts) == [len(offsets) for offsets in batches.token_offsets_of(texts)] == [4, 15, 0]
