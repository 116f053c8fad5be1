"""A text cut into what a model reads: its lines, and each line's sentences.

Models trained on sentence pairs (Multi30k's captions, Hansards' sentences) translate one
sentence well and a paragraph badly, and a paragraph can be longer than the model reads
(``--max-input-len``). LibreTranslate cuts a text the same way (lines, then sentences) and puts
the translations back together with the text's line breaks, which clients rely on.
"""

from __future__ import annotations

import re

# A word that ends a sentence: final . ! ? (or …), then closing quotes or brackets.
SENTENCE_END = re.compile(r"""[.!?\u2026]['"\u2019\u201d\u00bb)\]]*$""")
# Words ending in a full stop that rarely end a sentence.
ABBREVIATIONS = frozenset(("mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "cf", "no",
                           "fig", "approx", "dept", "inc", "ltd", "co", "corp"))


def ends_sentence(word: str, following: str) -> bool:
    """``word`` ends a sentence when ``following`` comes after it: sentence-final punctuation,
    not an abbreviation or an initial, and the next word starts with a capital or a digit."""
    following = following.lstrip("\"'\u201c\u2018\u00ab([")
    if not SENTENCE_END.search(word) or not following or not (following[0].isupper() or following[0].isdigit()):
        return False
    bare = word.rstrip("\"'\u2019\u201d\u00bb)]")
    stem = bare.rstrip(".!?\u2026").lower().lstrip("(")
    # a full stop after an initial (J.), an abbreviation (Dr.) or inside (e.g., U.S.) ends nothing
    return not (bare.endswith(".") and (len(stem) <= 1 or stem in ABBREVIATIONS or "." in stem))


def split_sentences(line: str) -> list[str]:
    """``line``'s sentences, whitespace collapsed (none for a blank line)."""
    words = line.split()
    sentences, start = [], 0
    for k in range(len(words) - 1):
        if ends_sentence(words[k], words[k + 1]):
            sentences.append(" ".join(words[start:k + 1]))
            start = k + 1
    if words:
        sentences.append(" ".join(words[start:]))
    return sentences


def split_text(text: str) -> list[list[str]]:
    """Each line of ``text`` (``\\n``, ``\\r\\n``, ...) as its sentences."""
    return [split_sentences(line) for line in text.splitlines() or [""]]


def join_text(lines: list[list[str]], like: str) -> str:
    """Translated sentences put back: a line's sentences joined by a space, each line ended as
    the source's line was (``\n``, ``\r\n``, ...; none after the last where it had none)."""
    ends = []
    for line in like.splitlines(keepends=True):
        content = line.splitlines()[0] if line.splitlines() else ""
        ends.append(line[len(content):])
    ends += [""] * (len(lines) - len(ends))
    return "".join(" ".join(sentences) + end for sentences, end in zip(lines, ends))
