"""The reference pages docs/configuration.md, docs/cli.md and docs/layout.md are generated from the code
(docs/gen_reference.py): regenerated here, each must equal the committed page, so none can drift from the settings,
the commands or the modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from ragsync.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", ["configuration.md", "cli.md", "layout.md"])
def test_generated_page_is_committed_as_generated(page: str) -> None:
    rendered = _generator().PAGES[page]()
    assert (DOCS / page).read_text() == rendered, f"docs/{page} is out of date: run make docs-reference"


def test_every_setting_has_a_description() -> None:
    missing = sorted(name.upper() for name, field in Settings.model_fields.items() if not field.description)
    assert not missing, f"settings without a description (Field(description=...)): {missing}"
