"""Hostile data for the fuzz tests: strings, numbers and JSON shapes a Coordinator or a record might hold.

Written out here rather than taken from `ragsync.shown`, so that a character dropped there fails a test.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from hypothesis import strategies as st

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

# The nastiest strings, each one kind of trouble: console markup, escape sequences, raw controls, bidi overrides,
# forged log lines, emoji codes and lone UTF-16 halves.
NASTY = (
    "[/]",
    "closing [/] with nothing open",
    "[bold red]x[/bold red]",
    "[link=http://x]y[/link]",
    "\x1b[31mred\x1b[0m",
    "\x1b]8;;http://x\x07link\x1b]8;;\x07",
    "\x1b[2J\x1b[H cleared",
    "c1 \x9b31m csi and \x85 nel",
    "bell\x07 back\x08 del\x7f nul\x00",
    "abc\u202edcba",
    "isolate \u2067x\u2069 mark \u200f",
    "acme\n2026-01-01 00:00:00 ERROR ragsync: forged",
    "carriage\rreturn",
    "lone \ud800 surrogate \udc80",
    ":thumbs_up: [@click=quit]",
    "trailing backslash \\",
)
# Every C0 and C1 control and DEL, one string each: a table or log line must show each as text.
CONTROLS = tuple(chr(code) for code in [*range(0x20), *range(0x7F, 0xA0)])
# Numbers a point's payload can hold: 64-bit integers, and floats (non-finite ones travel as null).
STORABLE_NUMBERS: tuple[Any, ...] = (
    2**63 - 1,
    -(2**63),
    1e308,
    5e-324,
    -0.0,
    float("inf"),
    float("-inf"),
    float("nan"),
)
# Integers past 64 bits: JSON and Python take them, a point's payload does not.
BEYOND_INT64: tuple[int, ...] = (
    2**64,
    -(2**64),
    10**300,
    10**4000,  # under Python's 4300-digit limit on reading an integer, so the Coordinator's JSON parses
)
HUGE_NUMBERS = (*STORABLE_NUMBERS, *BEYOND_INT64)
HUNDRED_KB = ("[/]\x1b[31m\u202e" * 12_500)[:100_000]
# The bytes a command may write: newline and tab; everything else below U+0020 or in U+007F-U+009F acts.
ALLOWED_CONTROLS = frozenset("\n\t")


def acting_characters(text: str) -> list[str]:
    """The characters of `text` that would act on a terminal instead of being seen: C0 and C1 controls, DEL (ESC
    among them), bidi controls, lone surrogates and line separators; newline and tab allowed."""
    return [
        char
        for char in text
        if char not in ALLOWED_CONTROLS and (unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in BIDI)
    ]


# Any string at all: every code point (lone surrogates included), pieces of the nasty ones, and the nasty ones.
any_text = st.lists(
    st.one_of(
        st.text(st.characters(exclude_categories=()), max_size=20),
        st.sampled_from(NASTY),
        st.sampled_from(CONTROLS),
        st.sampled_from([*BIDI, "\x1b[", "[", "]", "[/", "\\"]),
    ),
    max_size=6,
).map("".join)
nasty_text = st.one_of(any_text, st.sampled_from(NASTY), st.just(HUNDRED_KB))
numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HUGE_NUMBERS),
)
json_leaves = st.one_of(st.none(), st.booleans(), numbers, any_text)
storable_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(STORABLE_NUMBERS),
    any_text,
)


def nested(depth: int, leaf: Any) -> Any:
    """`leaf` under `depth` levels of alternating objects and lists."""
    value = leaf
    for level in range(depth):
        value = {"in": value} if level % 2 else [value]
    return value


json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)),
    max_leaves=20,
)
storable_values = st.recursive(
    storable_leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)),
    max_leaves=20,
)
deep_values = st.builds(nested, st.integers(1, 200), json_leaves)


def on_the_wire(text: str) -> str:
    """`text` as a protobuf string can carry it (valid UTF-8): each lone surrogate becomes a question mark."""
    return text.encode("utf-8", errors="replace").decode("utf-8")


wire_text = any_text.map(on_the_wire)
