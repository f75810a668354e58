"""Every alert of deploy/prometheus/alerts.yml links to its runbook: a `runbook_url` annotation naming a section
that exists on the Operations page of the docs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGE = "docs/operations.md"


def _anchors(markdown: str) -> set[str]:
    """The ids MkDocs gives the page's headings (its toc extension's slugify)."""
    anchors = set()
    fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        heading = None if fence else re.match(r"#+ (.*)", line)
        if heading:
            text = re.sub(r"[^\w\s-]", "", heading.group(1)).strip().lower()
            anchors.add(re.sub(r"[-\s]+", "-", text))
    return anchors


def test_every_alert_has_a_runbook_on_the_operations_page() -> None:
    rules = [
        rule
        for group in yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert rules
    anchors = _anchors((ROOT / PAGE).read_text())
    problems = []
    for rule in rules:
        url = rule.get("annotations", {}).get("runbook_url")
        if not url:
            problems.append(f"{rule['alert']}: no runbook_url annotation")
            continue
        path, _, anchor = url.partition("#")
        if path != PAGE or anchor not in anchors:
            problems.append(f"{rule['alert']}: {url} is not a section of {PAGE}")
    assert not problems, problems
