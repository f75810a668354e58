r"""Data as a person sees it: record text, ids, tenants, service names and error texts made safe to print.

Anything that came from a record, a request or an error is data, never instructions to the terminal, to rich or
to a log reader. `shown` is the one place that decides how: every character that would act instead of being seen
(C0 and C1 controls, DEL, which start escape sequences and line breaks; bidirectional overrides and isolates,
which reorder what follows; lone surrogates, which no encoder can write; line and paragraph separators) is
written as its Python escape, so `\x1b[31m` prints as the eight characters it is. Data is never put into a markup
string: `as_text` and `labelled` build rich `Text`, which is not parsed as markup (`rich.markup.escape` is not
enough: a `\[` in data would lose its backslash).
"""

from __future__ import annotations

import logging
import re

from rich.style import StyleType
from rich.text import Text

# Bidirectional controls: the embeddings (U+202A-U+202E), the isolates (U+2066-U+2069), the implicit marks
# (U+200E, U+200F) and the Arabic letter mark (U+061C).
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_ACTING = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff" + BIDI_CONTROLS + "]",
)
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def shown(value: object) -> str:
    """`value` as text in which every character is seen and none acts: controls, escape sequences, bidi controls
    and lone surrogates as backslash escapes (`\\x1b`, `\\n`, `\\u202e`, `\\udc80`); everything else unchanged."""
    return _ACTING.sub(_escaped, value if isinstance(value, str) else str(value))


def as_text(value: object, style: StyleType = "") -> Text:
    """`value` shown as a rich `Text`: printed as it reads, never parsed as markup."""
    return Text(shown(value), style=style)


def labelled(label: str, value: object, style: StyleType = "red") -> Text:
    """A line saying what went wrong: `label` in `style`, then `value`, both shown as data
    (`bad setting: KAFKA_PARTITIONS='many': ...`)."""
    return Text.assemble((shown(label), style), " ", shown(value))


class ShownLogRecords(logging.Filter):
    """Makes every log line one line of visible text: a newline or escape sequence in an id, a tenant or an error
    text cannot start a forged line or recolour the terminal. Installed on the handlers, so it sees the records of
    every logger. The traceback of a record with `exc_info` is left as Python formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed call: the handler reports it as such
        record.msg, record.args = shown(message), None
        return True
