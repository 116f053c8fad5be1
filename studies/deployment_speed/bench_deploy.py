"""Translation at deployment speed: mt's PyTorch model beside its CTranslate2 exports.

    .venv/bin/python studies/deployment_speed/bench_deploy.py MODEL_DIR --exports "ctranslate2 int8=DIR1" \
        "mt int8=DIR2" --beams 1 5 --threads 1 2 --rounds 3 \
        --json studies/deployment_speed/results/DATE_deploy_MODEL_CPU.jsonl

Every measurement runs in a fresh process (so load time and peak memory are its own):
load the model (timed), translate 20 lines to warm up, then translate Multi30k test 2016
(``--multi30k``, by default ``../shared/data/multi30k``; 1,000 sentences, as ``mt translate``
does with a file: batches of 6,000 source pieces divided by the beam, attention not kept)
and score it with sacreBLEU against the reference. Variants: mt fp32, mt bf16 (only where
the CPU computes bf16 natively), and each export at the type it stores. Runs alternate
variant by variant within each round, so a drift of the machine hits all alike; the table
gives medians over rounds. Reports sentences/s, target pieces/s (output subwords, EOS not
counted), BLEU, load seconds, peak RSS of the process (MiB) and the weights' size on disk.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mt.api import cpu_bf16_support, machine

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "multi30k"

CHILD = r"""
import json, resource, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from sacrebleu import corpus_bleu
from mt.api import open_translator
path, precision, beam = sys.argv[1], sys.argv[2], int(sys.argv[4])
src = open(sys.argv[5], encoding="utf-8").read().splitlines()
ref = open(sys.argv[6], encoding="utf-8").read().splitlines()
start = time.perf_counter()
t = open_translator(path, "cpu", precision)
load = time.perf_counter() - start
t.translate(src[:20], beam=beam, keep_attention=False)
start = time.perf_counter()
out = t.translate(src, beam=beam, keep_attention=False)
seconds = time.perf_counter() - start
pieces = sum(len(o.tgt_ids) for o in out)
print(json.dumps({"load_s": round(load, 3), "seconds": round(seconds, 3),
                  "sentences_per_s": round(len(src) / seconds, 2), "target_pieces_per_s": round(pieces / seconds, 1),
                  "bleu": round(corpus_bleu([o.text for o in out], [ref]).score, 2),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "precision": t.precision.name}))
"""


def weights_size(path: Path) -> int:
    return sum((path / name).stat().st_size for name in ("model.safetensors", "model.bin", "model.int8.safetensors")
               if (path / name).is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the PyTorch model directory")
    parser.add_argument("--exports", nargs="*", default=[], metavar="NAME=DIR",
                        help="its exports (mt export), each named as the table should show it")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-bf16", action="store_true", help="leave out mt bf16")
    parser.add_argument("--lines", type=int, default=0, help="the first N lines of test 2016 only (default: all)")
    parser.add_argument("--json", help="append one line per run here")
    parser.add_argument("--label", default="", help="written into every line")
    parser.add_argument("--multi30k", type=Path, default=DATA, help="Multi30k's folder (test_2016_flickr.{en,de}.gz)")
    ns = parser.parse_args()
    variants = [("mt fp32", ns.model, "fp32")]
    if cpu_bf16_support()[0] and not ns.no_bf16:
        variants.append(("mt bf16", ns.model, "bf16"))
    variants += [(name, folder, "auto") for name, folder in (e.split("=", 1) for e in ns.exports)]
    tmp = Path("/tmp") / f"bench_deploy_{time.time_ns()}"
    tmp.mkdir()
    for side in ("en", "de"):
        lines = gzip.decompress((ns.multi30k / f"test_2016_flickr.{side}.gz").read_bytes()).decode().splitlines()
        (tmp / f"test.{side}").write_text("".join(line + "\n" for line in lines[: ns.lines or None]), encoding="utf-8")
    info = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "label": ns.label, "lines": ns.lines or 1000,
            "model": str(Path(ns.model).resolve())}
    rows: dict[tuple, list[dict]] = {}
    for round_ in range(ns.rounds):
        for threads in ns.threads:
            for beam in ns.beams:
                for name, folder, precision in variants:
                    done = subprocess.run([sys.executable, "-c", CHILD, folder, precision, str(threads), str(beam),
                                           str(tmp / "test.en"), str(tmp / "test.de")], cwd=REPO, check=True,
                                          capture_output=True, text=True)
                    row = {"variant": name, "threads": threads, "beam": beam, "round": round_,
                           "weights_mib": round(weights_size(Path(folder)) / 2**20, 2),
                           **json.loads(done.stdout.strip().splitlines()[-1]), **info}
                    rows.setdefault((name, threads, beam), []).append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "machine"}), flush=True)
                    if ns.json:
                        with open(ns.json, "a", encoding="utf-8") as handle:
                            handle.write(json.dumps(row) + "\n")
    print("\n| variant | threads | beam | sentences/s | target pieces/s | BLEU | load s | peak RSS MiB | weights MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (name, threads, beam), runs in rows.items():
        med = {key: statistics.median(r[key] for r in runs)
               for key in ("sentences_per_s", "target_pieces_per_s", "bleu", "load_s", "peak_rss_mib")}
        print(f"| {name} | {threads} | {beam} | {med['sentences_per_s']:.1f} | {med['target_pieces_per_s']:,.0f} | "
              f"{med['bleu']:.2f} | {med['load_s']:.2f} | {med['peak_rss_mib']:.0f} | {runs[0]['weights_mib']:.1f} |")


if __name__ == "__main__":
    main()
