"""Offline language detection for ``mt serve``: LibreTranslate's ``POST /detect`` and ``source: "auto"``.

The detector is lingua (``lingua-language-detector``, Apache-2.0, models inside its wheel, no
network), in its high-accuracy mode, built for the served languages only. Measured on Multi30k
test 2016 (``bench/language_detection.py``; bench/results/2026-12-07_language_detection/): restricted to
{en, de, fr, cs}, lingua and py3langid are right on all 4,000 full captions (and on the 93 under
30 characters), so the choice is made on shorter texts, single words and short phrases cut from
the captions. On one word lingua is right 84.4% of the time among the four languages and 93.0%
between en and de, against py3langid's 69.7% / 73.3% (it finds no feature at all in words such as
"The" or "Two"), 81.3% / 88.9% for langdetect with only the served profiles loaded and 45.1% /
46.8% for langdetect as LibreTranslate calls it (all 55 languages, then filtered; 69.2% / 82.8%
with its lexilang word lists for short texts). On two words lingua and py3langid are even, on
three py3langid is a point ahead (98.8% against 97.5%). langdetect has had no release since 2021.
The price of lingua is memory and start-up: some 180-220 MB for four languages (about 45 MB a
language; py3langid takes a flat 75 MB) and 1-1.5 s to load them on a busy 2-core AMD EPYC, paid
once, when the detector is built (models preloaded, so no request waits for them). A detection
takes about 0.1-0.2 ms. Its confidence is more modest for English than for the other three:
a correct English caption gets a median of 94.6 among the four (a tenth under 80), German 99.9.

``LanguageDetector(languages).detect(text)`` answers like LibreTranslate: candidates best first
(at most three), confidence on a 0-100 scale, never an empty list. Text without letters gets
``[(first language, 0.0)]`` (LibreTranslate answers ``("en", 0)``); ``languages`` lists "en"
first when it is served, then the rest in alphabetical order. One served language is always the
answer, at confidence 100. Codes lingua does not know are served but never detected; when only
one served language is known to lingua, it is the answer to any text with letters (at 100).
Detection reads the first ``MAX_CHARS`` (1,000) characters of a text. The detector is built once and read-only afterwards: one instance may be used from many threads at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mt.errors import MTError

# Codes LibreTranslate uses that lingua spells otherwise (Traditional Chinese, Brazilian Portuguese, Norwegian).
_ALIASES = {"zt": "zh", "pb": "pt", "no": "nb"}
# Detection reads the start of a long text: enough to decide, and a bounded cost a request.
MAX_CHARS = 1000
MAX_CANDIDATES = 3


def _lingua():
    try:
        import lingua
    except ImportError:
        raise MTError("language detection needs lingua-language-detector: pip install 'mt[serve]'") from None
    return lingua


class LanguageDetector:
    """Detects which of the served languages a text is written in (see the module docstring)."""

    def __init__(self, languages: Iterable[str]) -> None:
        codes = {str(code).strip().lower() for code in languages} - {""}
        if not codes:
            raise ValueError("LanguageDetector needs at least one language code")
        self._languages = tuple(sorted(codes, key=lambda code: (code != "en", code)))
        self._detector = None
        self._known: dict[object, str] = {}  # lingua Language -> served code
        self._only: str | None = self._languages[0] if len(self._languages) == 1 else None
        if self._only is not None:
            return
        lingua = _lingua()
        by_iso = {language.iso_code_639_1.name.lower(): language for language in lingua.Language.all()}
        for code in self._languages:
            base = code.replace("_", "-").split("-")[0]
            language = by_iso.get(_ALIASES.get(base, base))
            if language is not None and language not in self._known:
                self._known[language] = code
        if len(self._known) == 1:
            self._only = next(iter(self._known.values()))
        elif self._known:
            self._detector = (lingua.LanguageDetectorBuilder.from_languages(*self._known)
                              .with_preloaded_language_models().build())

    @property
    def languages(self) -> tuple[str, ...]:
        """The served codes, "en" first when served, then alphabetical; the first one answers text without letters."""
        return self._languages

    @property
    def detectable(self) -> tuple[str, ...]:
        """The served codes the detector can tell apart (the others are never detected)."""
        if self._detector is None:
            return (self._only,) if self._only is not None else ()
        return tuple(code for code in self._languages if code in self._known.values())

    def detect(self, text: str) -> list[tuple[str, float]]:
        """``[(code, confidence 0-100), ...]``, best first, at most three, never empty."""
        if len(self._languages) == 1:
            return [(self._languages[0], 100.0)]
        text = text[:MAX_CHARS]
        if not any(ch.isalpha() for ch in text):
            return [(self._languages[0], 0.0)]
        if self._detector is None:
            return [(self._only, 100.0)] if self._only is not None else [(self._languages[0], 0.0)]
        values = self._detector.compute_language_confidence_values(text)
        if not values or values[0].value <= 0:
            return [(self._languages[0], 0.0)]
        out = [(self._known[values[0].language], round(100 * values[0].value, 1))]
        for value in values[1:MAX_CANDIDATES]:
            confidence = round(100 * value.value, 1)
            if confidence > 0:
                out.append((self._known[value.language], confidence))
        return out

    def detect_many(self, texts: Sequence[str]) -> list[list[tuple[str, float]]]:
        """``detect`` for each text, in order (in the calling thread: no pool of its own)."""
        return [self.detect(text) for text in texts]

    def __repr__(self) -> str:
        return f"LanguageDetector({list(self._languages)!r})"
