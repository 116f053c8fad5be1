"""The fields of a LibreTranslate request, checked one by one, the limits they meet, and the
settings the whole server runs under (``ServeSettings``), checked the same way.

Kept apart from the web framework so the rules (which fields, which limits, which message)
read in one place. LibreTranslate reads a field wherever a client puts it (JSON, a form, a
multipart form or the query string) and ignores fields it does not know, so clients written for
later versions of its API keep working: ``gather`` and ``parse_request`` do the same. mt's own
fields (``beam``, ``model``, ...) are checked as strictly as LibreTranslate's: every bad value is
a ``RequestError`` with its HTTP status and one sentence naming the problem, which the app
answers as LibreTranslate does, ``{"error": ...}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mt.decoding.attention_alignment import AlignOptions
from mt.decoding.search import DEFAULT_BEAM, LengthPenalty, SearchConfig
from mt.errors import ConfigError
from mt.serving.batcher import BatchingOptions

# LibreTranslate's fields that mt takes and does not use (it has no keys to check).
IGNORED_FIELDS = ("api_key", "secret")
FORMATS = ("text", "html")
MAX_ALTERNATIVES = 8
MAX_BEAM = 16

LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "cs": "Czech", "es": "Spanish", "it": "Italian",
                  "nl": "Dutch", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "zh": "Chinese",
                  "ja": "Japanese", "tr": "Turkish", "fi": "Finnish", "et": "Estonian", "lv": "Latvian",
                  "pl": "Polish", "sv": "Swedish", "da": "Danish", "uk": "Ukrainian", "ar": "Arabic",
                  "hi": "Hindi", "ko": "Korean", "el": "Greek", "hu": "Hungarian", "bg": "Bulgarian"}

_WHOLE = re.compile(r"[+-]?[0-9]{1,12}")  # ASCII digits only: str.isdigit() takes "²", which int() refuses
_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,12}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})(?:[eE][+-]?[0-9]{1,3})?")
_CODE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


class RequestError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass(frozen=True)
class Limits:
    """Per request: ``max_chars`` characters in all of ``q``, ``max_sentences`` texts,
    ``max_body`` bytes of body, ``timeout`` seconds from arrival to answer, ``read_timeout``
    seconds for the client to send its headers, and again for its body."""

    max_chars: int = 5000
    max_sentences: int = 64
    max_body: int = 1_000_000
    timeout: float = 30.0
    read_timeout: float = 10.0


@dataclass(frozen=True)
class ServeSettings:
    """How ``mt serve`` runs besides its models: where it listens (``host``, ``port``), what the
    models compute on (``device``, ``precision``), how they search and read attention as links,
    how requests are batched and limited, ``processes`` search processes per model with
    ``threads`` torch threads each (0: their share of the cores), ``max_connections`` open at
    once, and whether ``GET /models`` names the directories (``show_paths``).

    Built once where the settings arrive (the command line, a Python call) and checked there, as
    SearchConfig checks its own: a value out of range is one line naming the flag that sets it."""

    host: str = "127.0.0.1"
    port: int = 5000
    device: str = "auto"
    precision: str = "auto"
    search: SearchConfig = field(default_factory=lambda: SearchConfig(beam=DEFAULT_BEAM, keep_attention=False))
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    limits: Limits = field(default_factory=Limits)
    align: AlignOptions = field(default_factory=AlignOptions)
    processes: int = 1
    threads: int = 0
    max_connections: int = 1000
    show_paths: bool = False
    log_level: str = "info"

    def __post_init__(self) -> None:
        batching, limits = self.batching, self.limits
        for flag, value in (("--port", self.port), ("--search-processes", self.processes),
                            ("--max-batch-tokens", batching.max_tokens), ("--max-queue", batching.max_queue),
                            ("--char-limit", limits.max_chars), ("--max-texts", limits.max_sentences),
                            ("--max-body", limits.max_body), ("--max-connections", self.max_connections)):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        if self.port > 65535:
            raise ConfigError(f"--port must be at most 65535, got {self.port}")
        if self.threads < 0:
            raise ConfigError(f"--threads must be at least 0 (0: the cores shared among the search processes), got "
                              f"{self.threads}")
        if limits.timeout <= 0 or limits.read_timeout <= 0 or batching.max_wait < 0 or batching.min_wait < 0:
            raise ConfigError("--timeout and --read-timeout must be above 0, --max-wait-ms and --min-wait-ms at "
                              "least 0")


@dataclass
class TranslateRequest:
    texts: list[str]              # as sent (format html: the markup)
    as_list: bool                 # q was a list: answer with lists
    source: str
    target: str
    format: str = "text"
    model: str | None = None
    alternatives: int = 0
    beam: int | None = None
    length_penalty: float | None = None
    penalty: str | None = None
    attention: bool = False
    alignment: bool = False
    scores: bool = False
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def lines(self) -> list[str]:
        """The texts as the model reads them: a line break inside a text is a space."""
        return [" ".join(text.split()) for text in self.texts]


def shown(value: Any, width: int = 40) -> str:
    """``repr(value)``, cut to ``width`` characters: an error names the value, not a megabyte of it."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def form_fields(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Fields of a query string or a form, as LibreTranslate reads them: a key given twice is a
    list for ``q`` (several texts) and its first value otherwise."""
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key == "q" and "q" in fields:
            fields["q"] = [*(fields["q"] if isinstance(fields["q"], list) else [fields["q"]]), value]
        else:
            fields.setdefault(key, value)
    return fields


def gather(query: Iterable[tuple[str, str]], body: Mapping[str, Any] | None) -> dict[str, Any]:
    """A request's fields wherever the client put them: the query string's, overridden by the
    body's (JSON, form or multipart)."""
    fields = form_fields(query)
    if body is not None:
        fields.update(body)
    return fields


def _bool(body: Mapping, name: str) -> bool:
    value = body.get(name, False)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "false", "0", "", "yes", "no", "on", "off"}:
        return value.strip().lower() in {"true", "1", "yes", "on"}  # form fields are text
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise RequestError(400, f"'{name}' must be true or false, got {shown(value)}")


def _int(body: Mapping, name: str, low: int, high: int, clamp_low: bool = False) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        value = int(value.strip())
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e12:
        value = int(value)  # JSON 2.0
    if isinstance(value, int) and not isinstance(value, bool) and clamp_low and value < low:
        value = low  # LibreTranslate reads a negative alternatives as 0
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(400, f"'{name}' must be a whole number from {low} to {high}, got {shown(value)}")
    return value


def _float(body: Mapping, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise RequestError(400, f"'{name}' must be a number from {low:g} to {high:g}, got {shown(value)}")
    return float(value)


def _text(body: Mapping, name: str, required: bool = True, example: str = "en") -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise RequestError(400, f"'{name}' is missing: give it, e.g. \"{name}\": \"{example}\"")
        return None
    if not isinstance(value, str):
        raise RequestError(400, f"'{name}' must be a string, got {type(value).__name__}")
    return value.strip()


def _language(body: Mapping, name: str) -> str:
    code = _text(body, name) or ""
    if code != "auto" and not _CODE.fullmatch(code):
        raise RequestError(400, f"'{name}' must be a language code such as \"en\" (GET /languages), got {shown(code)}")
    return code.lower().replace("_", "-")


def check_text(text: str, what: str = "'q'") -> None:
    """Text a model can read: no lone surrogate (valid JSON can carry one; UTF-8 cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RequestError(400, f"{what} holds an unpaired surrogate (\\u{ord(text[err.start]):04x}) at character "
                                f"{err.start}: send valid Unicode") from None


def texts_of(body: Mapping, limits: Limits) -> tuple[list[str], bool]:
    """``q``, checked: (its texts, whether it was a list)."""
    q = body.get("q")
    if q is None or q == "":
        raise RequestError(400, "'q' is missing: give the text, a string or a list of strings")
    as_list = isinstance(q, list)
    texts = q if as_list else [q]
    if not all(isinstance(text, str) for text in texts):
        raise RequestError(400, "'q' must be a string or a list of strings")
    if not texts or not any(text.strip() for text in texts):
        raise RequestError(400, "'q' is empty: give the text")
    if len(texts) > limits.max_sentences:
        raise RequestError(413, f"'q' holds {len(texts)} texts, more than the {limits.max_sentences} a request may "
                                "hold: send them in several requests")
    chars = sum(len(text) for text in texts)
    if chars > limits.max_chars:
        raise RequestError(413, f"'q' holds {chars} characters, more than the {limits.max_chars} a request may hold: "
                                "split the text over several requests")
    for text in texts:
        check_text(text)
    return texts, as_list


def parse_request(body: Any, limits: Limits) -> TranslateRequest:
    """The request's fields, checked; ``RequestError`` (400, 413) names the first problem.
    Fields mt does not know are ignored, as LibreTranslate ignores them."""
    if not isinstance(body, Mapping):
        raise RequestError(400, "the body must be a JSON object such as {\"q\": \"Hello\", \"source\": \"en\", "
                                "\"target\": \"de\"}")
    texts, as_list = texts_of(body, limits)
    text_format = (_text(body, "format", required=False) or "text").lower()
    if text_format not in FORMATS:
        raise RequestError(400, f"'format' must be {' or '.join(FORMATS)}, got {shown(text_format)}")
    penalty = _text(body, "penalty", required=False)
    if penalty is not None and penalty not in {p.value for p in LengthPenalty}:
        raise RequestError(400, f"'penalty' must be one of {', '.join(p.value for p in LengthPenalty)}, got "
                                f"{shown(penalty)}")
    return TranslateRequest(
        texts=texts, as_list=as_list, source=_language(body, "source"), target=_language(body, "target"),
        format=text_format, model=_text(body, "model", required=False),
        alternatives=_int(body, "alternatives", 0, MAX_ALTERNATIVES, clamp_low=True) or 0,
        beam=_int(body, "beam", 1, MAX_BEAM), length_penalty=_float(body, "length_penalty", 0.0, 5.0),
        penalty=penalty, attention=_bool(body, "attention"), alignment=_bool(body, "alignment"),
        scores=_bool(body, "scores"))


def parse_detect(body: Any, limits: Limits) -> tuple[list[str], bool]:
    """``POST /detect``'s ``q``: (its texts, whether it was a list)."""
    if not isinstance(body, Mapping):
        raise RequestError(400, "the body must be a JSON object such as {\"q\": \"Hello\"}")
    return texts_of(body, limits)


def pharaoh(links) -> str:
    """Word links as ``mt align --pharaoh`` writes them: ``src-tgt`` pairs, 0-based."""
    return " ".join(f"{s}-{t}" for s, t in sorted(links))
