"""The ``POST /translate`` request, checked field by field, and its LibreTranslate-shaped answer.

Kept apart from the web framework so the rules (which fields, which limits, which message)
read in one place: every bad request becomes a ``RequestError`` with its HTTP status and one
sentence naming the problem, which the app returns as LibreTranslate does: ``{"error": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mt.decoding.search import LengthPenalty

# Fields a LibreTranslate client may send that mt takes but does not use.
IGNORED_FIELDS = ("api_key", "secret", "format")
FIELDS = ("q", "source", "target", "alternatives", "model", "beam", "length_penalty", "penalty", "attention",
          "alignment", "scores", *IGNORED_FIELDS)
MAX_ALTERNATIVES = 8
MAX_BEAM = 16

LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "cs": "Czech", "es": "Spanish", "it": "Italian",
                  "nl": "Dutch", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "zh": "Chinese",
                  "ja": "Japanese", "tr": "Turkish", "fi": "Finnish", "et": "Estonian", "lv": "Latvian"}


class RequestError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass(frozen=True)
class Limits:
    """Per request: ``max_chars`` characters in all of ``q``, ``max_sentences`` lines,
    ``max_body`` bytes of body, ``timeout`` seconds from arrival to answer."""

    max_chars: int = 5000
    max_sentences: int = 64
    max_body: int = 1_000_000
    timeout: float = 30.0


@dataclass
class TranslateRequest:
    lines: list[str]
    as_list: bool                 # q was a list: answer with lists
    source: str
    target: str
    model: str | None = None
    alternatives: int = 0
    beam: int | None = None
    length_penalty: float | None = None
    penalty: str | None = None
    attention: bool = False
    alignment: bool = False
    scores: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


def _bool(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "1", "false", "0", ""}:  # form fields are text
        return value.lower() in {"true", "1"}
    raise RequestError(400, f"'{name}' must be true or false, got {value!r}")


def _int(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(400, f"'{name}' must be a whole number from {low} to {high}, got {value!r}")
    return value


def _text(body: dict, name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise RequestError(400, f"'{name}' is missing: give the language code, e.g. \"{name}\": \"en\"")
        return None
    if not isinstance(value, str):
        raise RequestError(400, f"'{name}' must be a string, got {type(value).__name__}")
    return value.strip()


def parse_request(body: Any, limits: Limits) -> TranslateRequest:
    """The request's fields, checked; ``RequestError`` (400, 413) names the first problem."""
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object such as {\"q\": \"Hello\", \"source\": \"en\", "
                                "\"target\": \"de\"}")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise RequestError(400, f"unknown field '{unknown[0]}': the fields are {', '.join(FIELDS)}")
    q = body.get("q")
    if q is None:
        raise RequestError(400, "'q' is missing: give the text to translate, a string or a list of strings")
    as_list = isinstance(q, list)
    lines = q if as_list else [q]
    if not all(isinstance(line, str) for line in lines):
        raise RequestError(400, "'q' must be a string or a list of strings")
    if not lines or not any(line.strip() for line in lines):
        raise RequestError(400, "'q' is empty: give the text to translate")
    if len(lines) > limits.max_sentences:
        raise RequestError(413, f"'q' holds {len(lines)} texts, more than the {limits.max_sentences} a request may "
                                "hold: send them in several requests")
    chars = sum(len(line) for line in lines)
    if chars > limits.max_chars:
        raise RequestError(413, f"'q' holds {chars} characters, more than the {limits.max_chars} a request may hold: "
                                "split the text over several requests")
    flat = [" ".join(line.split()) for line in lines]  # line breaks inside a text are read as spaces
    penalty = _text(body, "penalty", required=False)
    if penalty is not None and penalty not in {p.value for p in LengthPenalty}:
        raise RequestError(400, f"'penalty' must be one of {', '.join(p.value for p in LengthPenalty)}, got "
                                f"{penalty!r}")
    length_penalty = body.get("length_penalty")
    if length_penalty is not None:
        try:
            length_penalty = float(length_penalty)
        except (TypeError, ValueError):
            raise RequestError(400, f"'length_penalty' must be a number, got {length_penalty!r}") from None
        if not 0.0 <= length_penalty <= 5.0:
            raise RequestError(400, f"'length_penalty' must be from 0 to 5, got {length_penalty}")
    return TranslateRequest(
        lines=flat, as_list=as_list, source=_text(body, "source") or "", target=_text(body, "target") or "",
        model=_text(body, "model", required=False), alternatives=_int(body, "alternatives", 0, MAX_ALTERNATIVES) or 0,
        beam=_int(body, "beam", 1, MAX_BEAM), length_penalty=length_penalty, penalty=penalty,
        attention=_bool(body, "attention"), alignment=_bool(body, "alignment"), scores=_bool(body, "scores"))


def pharaoh(links) -> str:
    """Word links as ``mt align --pharaoh`` writes them: ``src-tgt`` pairs, 0-based."""
    return " ".join(f"{s}-{t}" for s, t in sorted(links))
