"""The README and every docs page close each code block they open: one left open renders the rest of the page as
code, and `mkdocs build --strict` does not notice."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_code_block_is_closed(page: Path) -> None:
    fences = [n for n, line in enumerate(page.read_text().splitlines(), 1) if line.lstrip().startswith("```")]
    assert len(fences) % 2 == 0, f"{page.name}: the code block opened at line {fences[-1]} is never closed"
