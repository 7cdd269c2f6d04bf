"""reStructuredText as plain prose paragraphs (for language-model text, not rendering).

Kept: prose paragraphs (lines joined with single spaces), section titles (their own
paragraph), list items (one paragraph each, the bullet dropped), the body of
admonitions (`.. note::`, `.. warning::`, ...), and the text of inline markup
(``` ``code`` ``` -> `code`, `:ref:`text <target>`` -> `text`, `` `link <url>`_ `` ->
`link`, `**bold**` -> `bold`). Dropped: every other directive with its indented body
(`.. code-block::`, `.. kernel-doc::`, `.. toctree::`, tables made with directives),
comments and link targets (`.. _label:`), literal blocks (the indented block after a
paragraph ending in `::`; the `::` becomes `:` or goes), title under/overlines,
grid and simple tables, line blocks, field lists (`:Author: ...`), and paragraphs that
are mostly not letters (code or ASCII art left without markup).
"""

from __future__ import annotations

import re

ADMONITIONS = frozenset(
    "note warning attention caution danger error hint important tip seealso admonition".split()
)
MIN_LETTER_FRACTION = 0.6  # of a paragraph's non-space characters, below: not prose

_DIRECTIVE = re.compile(r"^\.\.(\s|$)")
_DIRECTIVE_NAME = re.compile(r"^\.\.\s+([\w:.-]+)::")
_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+_.:<>])\1{2,}\s*$")
_TABLE_RULE = re.compile(r"^(\+[-=+]+\+|=+( +=+)+)$")
_FIELD = re.compile(r"^:[\w][\w .-]*:(\s|$)")
_BULLET = re.compile(r"^([-*+\u2022]|#\.|\(?\d+[.)]|\(?[a-zA-Z][.)])\s+")
_INLINE = (
    (re.compile(r"``(.+?)``"), r"\1"),  # literals
    (re.compile(r":[\w:+.-]+:`([^`<]*?)\s*<[^`>]*>`"), r"\1"),  # :role:`text <target>`
    (re.compile(r":ref:`([^`]*)`"), lambda m: m.group(1).replace("_", " ")),  # a bare label
    (re.compile(r":[\w:+.-]+:`[~!]?([^`]*)`"), r"\1"),  # :role:`target`
    (re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?"), r"\1"),  # `text <url>`_
    (re.compile(r"`([^`]+)`_{0,2}"), r"\1"),  # `text`_ , `interpreted`
    (re.compile(r"\*\*(\S(?:.*?\S)?)\*\*"), r"\1"),  # strong
    (re.compile(r"(?<![\w*])\*(\S(?:[^*]*?\S)?)\*(?![\w*])"), r"\1"),  # emphasis
    (re.compile(r"\s*\[(?:#\w*|\*|\d+)\]_"), ""),  # footnote references
    (re.compile(r"\|(\w[\w -]*)\|_?"), r"\1"),  # substitutions
    (re.compile(r"\\(\s)"), ""),  # escaped spaces join characters
    (re.compile(r"\\(\S)"), r"\1"),
)


def inline_text(text: str) -> str:
    """The text of a paragraph's inline markup, single-spaced."""
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def is_prose(text: str) -> bool:
    """Whether enough of a paragraph's non-space characters are letters."""
    chars = [c for c in text if not c.isspace()]
    return bool(chars) and sum(c.isalpha() for c in chars) >= MIN_LETTER_FRACTION * len(chars)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def to_paragraphs(text: str) -> list[str]:
    """Plain prose paragraphs of a reStructuredText document (see the module docstring)."""
    found: list[str] = []
    block: list[str] = []  # lines of the paragraph being read
    state = {"indent": 0, "table": False}
    skip_deeper: int | None = None  # skip blank lines and lines indented more than this

    def close() -> None:
        items: list[list[str]] = []
        for line in block:
            bullet = _BULLET.match(line)
            if bullet or not items:
                items.append([])
            items[-1].append(line[bullet.end() :] if bullet else line)
        if not state["table"]:
            for item in items:
                paragraph = inline_text(" ".join(item))
                if is_prose(paragraph):
                    found.append(paragraph)
        block.clear()
        state["table"] = False

    for raw in text.expandtabs(8).splitlines():
        line, indent = raw.strip(), _indent(raw)
        if skip_deeper is not None:
            if not line or indent > skip_deeper:
                continue
            skip_deeper = None
        if not line:
            close()
            continue
        if block and indent > state["indent"] and not _BULLET.match(block[0]):
            close()  # a definition under its term, or a quote after a paragraph
        if not block:
            state["indent"] = indent
        if _DIRECTIVE.match(line):
            close()
            name = _DIRECTIVE_NAME.match(line)
            if not (name and name.group(1) in ADMONITIONS):
                skip_deeper = indent
            else:  # the admonition's argument, if any, is prose too
                argument = line[name.end() :].strip()
                if argument:
                    block.append(argument)
            continue
        if _ADORNMENT.match(line) and len(line) >= 3:
            if block and not state["table"]:  # the title is the line before: a paragraph
                title, body = block[-1], block[:-1]
                block[:] = body
                close()
                block.append(title)
            close()
            continue
        if _TABLE_RULE.match(line) or line.startswith("|"):
            state["table"] = True
        if _FIELD.match(line):
            continue
        if line.endswith("::"):
            stripped = line[:-2].rstrip()
            line = stripped + ":" if stripped and not line[:-2].endswith(" ") else stripped
            if line:
                block.append(line)
            skip_deeper = state["indent"]
            close()
            continue
        block.append(line)
    close()
    return found
