"""How a CTranslate2 export should use its threads: on one batch (``intra_threads``) or on
batches side by side (``inter_threads``), measured with CTranslate2 alone (no torch).

    .venv/bin/python studies/deployment_speed/ct2_threads.py EXPORT_DIR [EXPORT_DIR ...] --rounds 3 \
        --json studies/deployment_speed/results/DATE_ct2_threads_CPU.jsonl

Multi30k test 2016 (``--multi30k``, by default ``../shared/data/multi30k``; 1,000 sentences)
in one ``translate_batch`` call, batches of 6,000 source pieces divided by the beam, greedy and
beam 5; settings alternate within each round, each in a fresh process; prints medians of
sentences/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mt.api import machine

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "multi30k"
SETTINGS = {"1 thread": (1, 1), "2 threads on one batch (intra)": (1, 2), "2 batches side by side (inter)": (2, 1)}

CHILD = r"""
import gzip, sys, time
import ctranslate2, sentencepiece as spm
folder, inter, intra, beam, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
sp = spm.SentencePieceProcessor(model_file=f"{folder}/src.model")
src = [sp.encode(line, out_type=str) for line in gzip.open(data, "rt", encoding="utf-8").read().splitlines()]
t = ctranslate2.Translator(folder, device="cpu", inter_threads=inter, intra_threads=intra)
t.translate_batch(src[:20], beam_size=beam)
start = time.perf_counter()
t.translate_batch(src, beam_size=beam, max_batch_size=6000 // beam, batch_type="tokens")
print(len(src) / (time.perf_counter() - start))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exports", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="append one line per setting here")
    parser.add_argument("--multi30k", type=Path, default=DATA, help="Multi30k's folder (test_2016_flickr.en.gz)")
    ns = parser.parse_args()
    data = ns.multi30k / "test_2016_flickr.en.gz"
    for folder in ns.exports:
        for beam in (1, 5):
            rates: dict[str, list[float]] = {name: [] for name in SETTINGS}
            for _ in range(ns.rounds):
                for name, (inter, intra) in SETTINGS.items():
                    out = subprocess.run([sys.executable, "-c", CHILD, folder, str(inter), str(intra), str(beam),
                                          str(data)], check=True, capture_output=True, text=True).stdout
                    rates[name].append(float(out.split()[-1]))
            for name, runs in rates.items():
                row = {"export": folder, "beam": beam, "setting": name, "sentences_per_s": round(statistics.median(runs), 1),
                       "runs": [round(r, 1) for r in runs], "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
                print(f"{Path(folder).name:24s} beam {beam}  {name:32s} {row['sentences_per_s']:8.1f} sent/s  {row['runs']}",
                      flush=True)
                if ns.json:
                    with open(ns.json, "a", encoding="utf-8") as handle:
                        handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
