"""Text from files, escaped for where it is shown.

A results folder is untrusted input, and so is every piece of text in it: a schedule's
summary in ``grid.json``, the units in ``experiment.json``, an environment value in a run's
``config.json``. Whatever reaches ``report.md``, ``compare.md``, a terminal or a CSV cell
passes through one of these functions, each for its destination:

- ``md_text``: plain markdown text: control characters shown as ``\\x..``, HTML special
  characters as entities, the markdown punctuation that could make a link, an image, a
  heading, emphasis, a table cell or code backslash-escaped; long values shortened with a
  note.
- ``md_code``: a markdown code span that shows its text literally, whatever it holds.
- ``terminal``: text for a terminal: control and escape sequences shown as ``\\x..``.
- ``csv_cell``: a CSV cell a spreadsheet does not run as a formula.

Honest values (names, units, versions) come out unchanged by ``terminal`` and ``md_code``,
and rendered identically by ``md_text``.
"""

from __future__ import annotations

import re

MAX_CHARS = 200  # longer values are shortened, with a note of how much was left out

# Backslash-escaped in markdown text: emphasis (* ~), headings (#), tables (|), code (`) and
# the backslash itself; a "](" that would close a link or image text becomes "\\](". An
# underscore inside a word, and brackets not followed by "(", cannot form anything on one
# line (no link reference can be defined there), so honest text such as "milestones=[30,
# 60]" or "x86_64" stays as it is.
_MD_PUNCTUATION = "\\`*#|~"
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
CSV_LEADING = ("=", "+", "-", "@", "\t", "\r")


def visible(text: object, limit: int | None = MAX_CHARS) -> str:
    """``text`` as a string with every control or invisible character written as an escape
    (``\\x1b``, ``\\r``, ``\\u202e``), shortened to ``limit`` characters with a note."""
    text = str(text)
    more = 0
    if limit is not None and len(text) > limit:
        text, more = text[:limit], len(text) - limit
    if not text.isprintable():
        text = "".join(c if c.isprintable() else _escape_char(c) for c in text)
    return text + (f"… ({more:,} more characters)" if more else "")


def _escape_char(c: str) -> str:
    code = ord(c)
    if c == "\n":
        return "\\n"
    if c == "\r":
        return "\\r"
    if c == "\t":
        return "\\t"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def terminal(text: object, limit: int | None = MAX_CHARS) -> str:
    """Text safe to print: no control or escape sequence reaches the terminal (each is
    shown as ``\\x..``), and a long value is shortened with a note."""
    return visible(text, limit)


def md_text(text: object, limit: int | None = MAX_CHARS) -> str:
    """Text that renders as itself in markdown and in the HTML a viewer makes of it: no
    tag, entity, link, image, heading, emphasis or table cell boundary can come from it."""
    out = []
    text = visible(text, limit)
    for i, c in enumerate(text):
        if c in _HTML:
            out.append(_HTML[c])
        elif c in _MD_PUNCTUATION or (c == "]" and text[i + 1:i + 2] == "("):
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def md_code(text: object, limit: int | None = MAX_CHARS) -> str:
    """A markdown code span showing ``text`` literally: the fence is longer than any run of
    backticks inside, and a table pipe is escaped (GitHub tables split cells at ``|`` even in
    code; the escape is not shown)."""
    body = visible(text, limit).replace("|", "\\|")
    run = longest = 0
    for c in body:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a string beginning with ``= + - @`` (or a tab
    or CR) gets a leading apostrophe, unless it is a plain number (``-0.5``); anything else
    is returned as it is."""
    if isinstance(value, str) and value.startswith(CSV_LEADING) and \
            not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


_PLAIN_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
