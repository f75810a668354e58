"""The vector length a model folder declares, read without loading the model."""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ragsync.model.encoder import configured_dimension


def _folder(tmp_path: Path, modules: Sequence[tuple[str, Mapping[str, Any] | None]]) -> str:
    tmp_path.mkdir(exist_ok=True)
    listing = []
    for index, (kind, config) in enumerate(modules):
        path = f"{index}_{kind}" if config is not None else ""
        if config is not None:
            (tmp_path / path).mkdir()
            (tmp_path / path / "config.json").write_text(json.dumps(config))
        listing.append({"idx": index, "name": str(index), "path": path, "type": f"sentence_transformers.models.{kind}"})
    (tmp_path / "modules.json").write_text(json.dumps(listing))
    return str(tmp_path)


def test_the_pooling_gives_the_length_once_per_mode_and_a_dense_layer_after_it_wins(tmp_path: Path) -> None:
    pooling = {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}
    assert configured_dimension(_folder(tmp_path / "a", [("Transformer", None), ("Pooling", pooling)])) == 384
    both = pooling | {"pooling_mode_max_tokens": True}
    assert configured_dimension(_folder(tmp_path / "b", [("Transformer", None), ("Pooling", both)])) == 768
    dense = {"in_features": 384, "out_features": 256}
    modules = [("Transformer", None), ("Pooling", pooling), ("Dense", dense), ("Normalize", None)]
    assert configured_dimension(_folder(tmp_path / "c", modules)) == 256


def test_the_pooling_layout_of_sentence_transformers_6_is_read_too(tmp_path: Path) -> None:
    mean = {"embedding_dimension": 64, "pooling_mode": "mean", "include_prompt": True}
    assert configured_dimension(_folder(tmp_path / "f", [("Transformer", None), ("Pooling", mean)])) == 64
    two = {"embedding_dimension": 64, "pooling_mode": ["mean", "max"]}
    assert configured_dimension(_folder(tmp_path / "g", [("Transformer", None), ("Pooling", two)])) == 128


def test_a_folder_that_does_not_say_gives_none_so_the_model_is_asked(tmp_path: Path) -> None:
    assert configured_dimension(str(tmp_path)) is None  # no modules.json
    unknown = [("Transformer", None), ("Pooling", {"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True})]
    assert configured_dimension(_folder(tmp_path / "d", [*unknown, ("LayerNorm", {"dimension": 8})])) is None
    assert configured_dimension(_folder(tmp_path / "e", [("Transformer", None), ("Pooling", {})])) is None
