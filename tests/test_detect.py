"""Language detection for ``mt serve`` (mt.serving.detect): real sentences, the served languages
only, LibreTranslate's answers for one language and for text without letters, its 0-100 scale,
threads, and the one-line error when the package is missing."""

from __future__ import annotations

import importlib.util
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from mt.errors import MTError
from mt.serving.detect import LanguageDetector

# Caption-like sentences typed here (not read from the shared Multi30k files).
SENTENCES = {
    "en": ["Two young children are playing football in a park.", "A woman in a red coat walks her dog.",
           "A man is cooking dinner.", "Thank you very much"],
    "de": ["Zwei kleine Kinder spielen in einem Park Fußball.", "Eine Frau in einem roten Mantel geht mit ihrem Hund.",
           "Ein Mann kocht das Abendessen.", "Vielen Dank"],
    "fr": ["Deux jeunes enfants jouent au football dans un parc.", "Une femme en manteau rouge promène son chien.",
           "Un homme prépare le dîner.", "Merci beaucoup"],
    "cs": ["Dvě malé děti hrají v parku fotbal.", "Žena v červeném kabátě venčí svého psa.",
           "Muž vaří večeři.", "Děkuji mockrát"],
}
NO_LETTERS = ["", "   ", "12345", "3.14 + 2 = 5.14", "🙂🙂👍", "!!! ???"]

requires_lingua = pytest.mark.skipif(
    importlib.util.find_spec("lingua") is None, reason="lingua-language-detector is not installed (pip install -e '.[serve]')")


@pytest.fixture(scope="module")
def four() -> LanguageDetector:
    return LanguageDetector({"de", "cs", "fr", "en"})


@pytest.fixture(scope="module")
def pair() -> LanguageDetector:
    return LanguageDetector(["de", "en"])


@requires_lingua
def test_real_sentences_in_four_languages(four: LanguageDetector) -> None:
    assert four.languages == ("en", "cs", "de", "fr")  # "en" first (LibreTranslate's fallback), then alphabetical
    for lang, sentences in SENTENCES.items():
        for sentence in sentences:
            ranking = four.detect(sentence)
            assert ranking[0][0] == lang, (sentence, ranking)


@requires_lingua
def test_confidence_on_libretranslates_scale(four: LanguageDetector) -> None:
    for sentences in SENTENCES.values():
        for sentence in sentences:
            ranking = four.detect(sentence)
            assert 1 <= len(ranking) <= 3
            confidences = [c for _, c in ranking]
            assert confidences == sorted(confidences, reverse=True)
            assert all(isinstance(c, float) and 0 < c <= 100 and round(c, 1) == c for c in confidences)
            assert len({code for code, _ in ranking}) == len(ranking)
            assert sum(confidences) <= 100.3  # probabilities over the served languages, each rounded
    assert four.detect(SENTENCES["de"][0])[0][1] > 90  # a full German sentence is sure


@requires_lingua
def test_only_served_languages_are_answered(pair: LanguageDetector) -> None:
    for lang in ("fr", "cs"):  # not served: the answer is still one of the served ones
        for sentence in SENTENCES[lang]:
            assert {code for code, _ in pair.detect(sentence)} <= {"en", "de"}
    for lang in ("en", "de"):
        for sentence in SENTENCES[lang]:
            assert pair.detect(sentence)[0][0] == lang
    # the restriction decides: an English sentence among French and Czech only is not "en"
    assert LanguageDetector(["fr", "cs"]).detect(SENTENCES["en"][0])[0][0] in ("fr", "cs")


def test_a_single_language_is_always_the_answer() -> None:
    one = LanguageDetector(["de"])
    assert one.languages == ("de",)
    for text in SENTENCES["en"][:1] + SENTENCES["de"][:1] + NO_LETTERS:
        assert one.detect(text) == [("de", 100.0)]


@requires_lingua
def test_text_without_letters_gets_the_first_language_at_zero(four: LanguageDetector) -> None:
    for text in NO_LETTERS:
        assert four.detect(text) == [("en", 0.0)], text
    assert LanguageDetector(["fr", "de"]).detect("2024") == [("de", 0.0)]  # no "en": the first in order


@requires_lingua
def test_codes_the_detector_does_not_know_are_served_but_never_detected() -> None:
    mixed = LanguageDetector(["en", "de", "xx"])
    assert mixed.languages == ("en", "de", "xx")
    assert mixed.detectable == ("en", "de")
    assert mixed.detect(SENTENCES["de"][1])[0][0] == "de"
    assert all(code != "xx" for s in SENTENCES["fr"] for code, _ in mixed.detect(s))
    assert LanguageDetector(["en", "xx"]).detect(SENTENCES["de"][0]) == [("en", 100.0)]  # the one it knows
    assert LanguageDetector(["xx", "yy"]).detect("Hallo Welt") == [("xx", 0.0)]
    assert LanguageDetector(["EN", "de-AT", "de"]).languages == ("en", "de", "de-at")
    with pytest.raises(ValueError):
        LanguageDetector([])


@requires_lingua
def test_detect_many_and_threads(four: LanguageDetector) -> None:
    texts = [s for sentences in SENTENCES.values() for s in sentences] + NO_LETTERS
    expected = [four.detect(t) for t in texts]
    assert four.detect_many(texts) == expected
    assert four.detect_many([]) == []
    with ThreadPoolExecutor(max_workers=6) as pool:  # as the app calls it: asyncio.to_thread
        results = list(pool.map(four.detect, texts * 10))
        batches = list(pool.map(four.detect_many, [texts] * 6))
    assert results == expected * 10
    assert batches == [expected] * 6


def test_missing_package_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lingua", None)  # `import lingua` now raises ImportError
    with pytest.raises(MTError) as err:
        LanguageDetector(["en", "de"])
    message = str(err.value)
    assert "\n" not in message
    assert "pip install 'mt[serve]'" in message and "lingua-language-detector" in message
