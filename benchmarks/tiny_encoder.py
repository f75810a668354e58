"""A tiny random encoder for scale runs: 1 BERT layer, 64 wide, the MiniLM tokenizer, saved as a
sentence-transformers folder. Its vectors mean nothing; it lets 100k+ items through the real stages in minutes.

    .venv/bin/python -m benchmarks.tiny_encoder data/tiny-encoder   # then EMBEDDING_MODEL=data/tiny-encoder
"""

from __future__ import annotations

import sys
from pathlib import Path


def build(folder: Path) -> Path:
    """Write the tiny encoder to `folder` (made from the packaged model's tokenizer, offline); the folder."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel
    from transformers.utils import logging as transformers_logging

    from ragsync.model.encoder import model_path

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call] # its "Writing model shards" bars would break the benchmark's table
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_path("all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
    )
    transformer_folder = folder / "transformer"
    BertModel(config).save_pretrained(transformer_folder)  # type: ignore[no-untyped-call]
    tokenizer.save_pretrained(transformer_folder)
    word = Transformer(str(transformer_folder), max_seq_length=256)
    pooling = Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[word, pooling, Normalize()]).save(str(folder))
    return folder


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "data/tiny-encoder")))
