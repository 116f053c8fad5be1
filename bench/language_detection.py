"""Language detectors for ``mt serve``'s ``/detect`` and ``source: "auto"``: accuracy, speed, load time, memory.

    .venv/bin/python bench/language_detection.py   # writes bench/results/DATE_language_detection/results.json

What it measures, on what: the 1,000 Multi30k test-2016 captions in each of en, de, fr and cs
(``../shared/data/multi30k/test_2016_flickr.{en,de,fr,cs}.gz``), each candidate detector

- restricted to the four languages {en, de, fr, cs} (4,000 captions) and to the pair {en, de}
  (the 2,000 en and de captions), as ``mt serve`` restricts detection to the languages it serves;
- accuracy (the best candidate is the caption's language), overall, per language, for the captions
  under 30 characters (Python ``len``; only 93 of the 4,000, so ``n`` is given), and on short
  texts cut from every caption: 1, 2 and 3 consecutive words at a random place (seed 0), the
  words and short phrases a translation box sees (a caption's first words would be mostly
  "A" / "Ein" / "Un" / "Muž");
- milliseconds per caption (one thread, full captions, the four-language detector), the load time
  (import plus construction, models preloaded where the package can), and memory: the RSS growth
  of a fresh Python subprocess per detector, after loading and after detecting everything (and the
  peak, VmHWM), over its RSS once the data was read and numpy imported (``mt serve`` has numpy,
  and torch, loaded already; py3langid needs numpy).

Candidates: lingua-language-detector (high-accuracy and low-accuracy modes), py3langid
(``set_languages``), langdetect (LibreTranslate's way: all 55 profiles, then filtered to the served
languages; and with only the served profiles loaded), LibreTranslate's own combination (lexilang
under 20 characters, else langdetect), and ``mt.api.LanguageDetector`` (what ``mt serve`` runs,
``mt.serving.detect``). A missing package skips its candidates. The JSON names the CPU (lscpu)
and the package versions. ``--only NAME ...`` runs some candidates; ``--lines N`` reads the first N
captions of each language (a quick check; the figures need all 1,000).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "multi30k"
LANGS4 = ("en", "de", "fr", "cs")
PAIR = ("en", "de")
SHORT_CHARS = 30
WINDOWS = (1, 2, 3)  # words in the short texts cut from the captions

Detect = Callable[[str], "list[tuple[str, float]]"]  # candidates best first, probability 0-1


# --- candidates: each loader takes the served languages and returns a function text -> ranking ---

def _lingua(langs: tuple[str, ...], low: bool = False) -> Detect:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_iso_codes_639_1(*(getattr(IsoCode639_1, c.upper()) for c in langs))
    if low:
        builder = builder.with_low_accuracy_mode()
    detector = builder.with_preloaded_language_models().build()

    def detect(text: str) -> list[tuple[str, float]]:
        return [(v.language.iso_code_639_1.name.lower(), v.value)
                for v in detector.compute_language_confidence_values(text)]
    return detect


def _py3langid(langs: tuple[str, ...]) -> Detect:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(langs))
    return identifier.rank


def _langdetect_all(langs: tuple[str, ...]) -> Detect:
    """LibreTranslate's use: every profile loaded, the served languages kept from the result."""
    from langdetect import DetectorFactory, LangDetectException, detect_langs

    DetectorFactory.seed = 0
    detect_langs("warm up: loads the profiles")

    def detect(text: str) -> list[tuple[str, float]]:
        try:
            return [(x.lang, x.prob) for x in detect_langs(text) if x.lang in langs]
        except LangDetectException:
            return []
    return detect


def _langdetect_served(langs: tuple[str, ...]) -> Detect:
    """langdetect with only the served languages' profiles loaded (a real restriction)."""
    from langdetect import LangDetectException
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_json_profile([Path(PROFILES_DIRECTORY, c).read_text(encoding="utf-8") for c in langs])
    factory.set_seed(0)

    def detect(text: str) -> list[tuple[str, float]]:
        d = factory.create()
        d.append(text)
        try:
            return [(x.lang, x.prob) for x in d.get_probabilities()]
        except LangDetectException:
            return []
    return detect


def _libretranslate(langs: tuple[str, ...]) -> Detect:
    """libretranslate/detect.py: lexilang for texts under 20 characters, else langdetect filtered."""
    from lexilang.detector import detect as lexilang_detect

    langdetect = _langdetect_all(langs)

    def detect(text: str) -> list[tuple[str, float]]:
        if len(text) < 20:
            code, conf = lexilang_detect(text, list(langs))
            if conf > 0:
                return [(code, conf)]
        return langdetect(text)[:3]
    return detect


def _mt(langs: tuple[str, ...]) -> Detect:
    from mt.api import LanguageDetector  # imported before the clock starts (worker): lingua loads here

    detector = LanguageDetector(langs)
    return lambda text: [(code, conf / 100) for code, conf in detector.detect(text)]


CANDIDATES: dict[str, tuple[Callable[[tuple[str, ...]], Detect], tuple[str, ...], str]] = {
    "lingua": (_lingua, ("lingua-language-detector",), "high-accuracy mode, models preloaded"),
    "lingua-low": (lambda langs: _lingua(langs, low=True), ("lingua-language-detector",),
                   "low-accuracy mode (trigrams only), models preloaded"),
    "py3langid": (_py3langid, ("py3langid", "numpy"), "set_languages, norm_probs=True"),
    "langdetect": (_langdetect_all, ("langdetect",), "all 55 profiles, result filtered (LibreTranslate's way)"),
    "langdetect-served": (_langdetect_served, ("langdetect",), "only the served languages' profiles loaded"),
    "libretranslate": (_libretranslate, ("langdetect", "lexilang"),
                       "LibreTranslate's Detector: lexilang under 20 chars, else langdetect filtered"),
    "mt.serving.detect": (_mt, ("lingua-language-detector",), "mt serve's LanguageDetector"),
}


# --- the worker: one fresh process per candidate ---

def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def read_data(lines: int = 0) -> dict[str, list[str]]:
    """The captions of each language (the first ``lines`` of them; 0: all)."""
    out = {}
    for lang in LANGS4:
        with gzip.open(DATA / f"test_2016_flickr.{lang}.gz", "rt", encoding="utf-8") as f:
            out[lang] = [line.rstrip("\n") for line in f][: lines or None]
    return out


def _window(sentence: str, words: int, rng: random.Random) -> str:
    tokens = sentence.split()
    start = rng.randrange(max(1, len(tokens) - words + 1))
    return " ".join(tokens[start:start + words])


def _score(detect: Detect, data: dict[str, list[str]], langs: tuple[str, ...]) -> dict:
    """Accuracy by language on full captions, those under SHORT_CHARS, and WINDOWS-word pieces of them."""
    kinds = ["full", "short"] + [f"words{k}" for k in WINDOWS]
    result: dict = {"per_language": {}}
    totals = {kind: [0, 0] for kind in kinds}
    seconds = 0.0
    confusion: dict[str, dict[str, int]] = {}
    rng = random.Random(0)
    confidences: list[float] = []  # the best candidate's, on the full captions it gets right
    for gold in langs:
        counts = {kind: [0, 0] for kind in kinds}
        row = confusion.setdefault(gold, {})
        for sentence in data[gold]:
            start = time.perf_counter()
            ranking = detect(sentence)
            seconds += time.perf_counter() - start
            best = ranking[0][0] if ranking else None
            if best == gold:
                confidences.append(ranking[0][1])
            row[str(best)] = row.get(str(best), 0) + 1
            for kind in ["full"] + (["short"] if len(sentence) < SHORT_CHARS else []):
                counts[kind][0] += best == gold
                counts[kind][1] += 1
            for k in WINDOWS:
                ranking = detect(_window(sentence, k, rng))
                counts[f"words{k}"][0] += bool(ranking) and ranking[0][0] == gold
                counts[f"words{k}"][1] += 1
        result["per_language"][gold] = {k: {"accuracy": c[0] / c[1] if c[1] else None, "n": c[1]}
                                        for k, c in counts.items()}
        for k, total in totals.items():
            total[0] += counts[k][0]
            total[1] += counts[k][1]
    for k, c in totals.items():
        result[k] = {"accuracy": c[0] / c[1] if c[1] else None, "n": c[1]}
    result["confusion"] = confusion
    if confidences:
        result["confidence_when_right"] = {"median": statistics.median(confidences),
                                           "p10": statistics.quantiles(confidences, n=10)[0], "min": min(confidences)}
    result["ms_per_sentence"] = 1000 * seconds / totals["full"][1]
    return result


def worker(name: str, lines: int = 0) -> dict:
    import numpy  # noqa: F401  (loaded in mt serve already: not counted)

    if name == "mt.serving.detect":
        import mt.api  # noqa: F401  (mt serve has mt, and torch, loaded already: not counted)
    loader = CANDIDATES[name][0]
    data = read_data(lines)
    rss0 = _status_kb("VmRSS")
    start = time.perf_counter()
    detect4 = loader(LANGS4)
    load_s = time.perf_counter() - start
    rss_loaded = _status_kb("VmRSS")
    detect4("warm-up")
    four = _score(detect4, data, LANGS4)
    rss_run = _status_kb("VmRSS")
    hwm = _status_kb("VmHWM")
    pair = _score(loader(PAIR), data, PAIR)
    return {"load_s": load_s,
            "rss_base_mb": rss0 / 1024,
            "rss_growth_loaded_mb": (rss_loaded - rss0) / 1024,
            "rss_growth_after_run_mb": (rss_run - rss0) / 1024,
            "peak_growth_mb": (hwm - rss0) / 1024,
            "four_languages": four, "en_de": pair}


# --- the driver ---

def _versions(packages: tuple[str, ...]) -> dict[str, str] | None:
    try:
        return {p: metadata.version(p) for p in packages}
    except metadata.PackageNotFoundError:
        return None


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" /
                        f"{datetime.date.today().isoformat()}_language_detection" / "results.json")
    parser.add_argument("--only", nargs="*", choices=sorted(CANDIDATES), help="these candidates only")
    parser.add_argument("--lines", type=int, default=0, help="the first N captions of each language (0: all 1,000)")
    parser.add_argument("--worker", choices=sorted(CANDIDATES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        json.dump(worker(args.worker, args.lines), sys.stdout)
        return

    report = {"date": datetime.date.today().isoformat(), "cpu": _cpu(), "python": platform.python_version(),
              "data": f"Multi30k test_2016_flickr.{{en,de,fr,cs}}, {args.lines or 1000:,} captions each",
              "short_chars": SHORT_CHARS, "window_words": WINDOWS, "window_seed": 0,
              "command": "python bench/language_detection.py " + " ".join(sys.argv[1:]),
              "load_average_at_start": os.getloadavg(), "detectors": {}}
    for name in args.only or CANDIDATES:
        _, packages, how = CANDIDATES[name]
        versions = _versions(packages)
        if versions is None:
            print(f"{name}: skipped (not installed: {', '.join(packages)})", file=sys.stderr)
            continue
        proc = subprocess.run([sys.executable, __file__, "--worker", name, "--lines", str(args.lines)], check=False,
                              capture_output=True, text=True, cwd=REPO, timeout=1800)
        if proc.returncode:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        r = json.loads(proc.stdout)
        r.update(versions=versions, how=how)
        report["detectors"][name] = r
        f4, p2 = r["four_languages"], r["en_de"]
        print(f"{name:18} 4-lang {f4['full']['accuracy']:.4f}  en-de {p2['full']['accuracy']:.4f}  "
              f"<{SHORT_CHARS} chars {f4['short']['accuracy']:.3f} (n={f4['short']['n']})  "
              + "".join(f"{k}w {f4[f'words{k}']['accuracy']:.3f}/{p2[f'words{k}']['accuracy']:.3f}  " for k in WINDOWS) +
              f"{f4['ms_per_sentence']:.3f} ms  load {r['load_s']:.2f} s  "
              f"+{r['rss_growth_after_run_mb']:.0f} MB (peak +{r['peak_growth_mb']:.0f})", flush=True)
    report["load_average_at_end"] = os.getloadavg()  # other work on the machine slows the timings
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}\n")
    print(markdown(report))


def markdown(report: dict) -> str:
    """The table of docs/lab/benchmarks.md: accuracies in %, 4-language / en-de where two are given."""
    def pct(x: float) -> str:  # 99.95 is not written 100.0
        return f"{100 * x:.2f}" if x < 1 and round(100 * x, 1) == 100 else f"{100 * x:.1f}"

    def versions(r: dict) -> str:
        v = {p: ver for p, ver in r["versions"].items() if p != "numpy"}
        return next(iter(v.values())) if len(v) == 1 else ", ".join(f"{p} {ver}" for p, ver in v.items())

    lines = [f"| detector | version | 4 languages | en-de | <{SHORT_CHARS} chars | "
             + " | ".join(f"{k} word{'s' * (k > 1)} (4 / en-de)" for k in WINDOWS)
             + " | ms / caption | load s | MB |",
             "|" + " --- |" * (9 + len(WINDOWS) - 1)]
    for name, r in report["detectors"].items():
        f4, p2 = r["four_languages"], r["en_de"]
        lines.append(f"| {name} | {versions(r)} | {pct(f4['full']['accuracy'])} | "
                     f"{pct(p2['full']['accuracy'])} | {pct(f4['short']['accuracy'])} (n={f4['short']['n']}) | "
                     + " | ".join(f"{pct(f4[f'words{k}']['accuracy'])} / {pct(p2[f'words{k}']['accuracy'])}"
                                  for k in WINDOWS)
                     + f" | {f4['ms_per_sentence']:.3f} | {r['load_s']:.2f} | {r['rss_growth_after_run_mb']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
