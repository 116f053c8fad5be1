"""Translation under torch.no_grad (what mt's search uses) against an outer torch.inference_mode,
alternating, greedy and beam 5: sentences/s, on the first LINES (250) lines of Multi30k test 2016
(``../shared/data/multi30k/test_2016_flickr.en.gz``), ROUNDS (3) rounds, 2 threads. Prints one
JSON line with the machine.

    .venv/bin/python bench/inference_mode.py MODEL_DIR [LINES] [ROUNDS] >> bench/results/DATE_inference_mode_CPU.txt
"""
import gzip
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from mt.api import machine, open_translator

REPO = Path(__file__).resolve().parents[1]
TEST = REPO.parent / "shared" / "data" / "multi30k" / "test_2016_flickr.en.gz"


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 else 2)
    model_dir = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 250
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.set_num_threads(2)
    lines = gzip.decompress(TEST.read_bytes()).decode().splitlines()[:n]
    translator = open_translator(model_dir, device="cpu")
    translator.translate(lines[:50], beam=5)  # warm-up
    speeds: dict[str, dict[int, list[float]]] = {"no_grad": {1: [], 5: []}, "inference_mode": {1: [], 5: []}}
    for _ in range(rounds):
        for mode, runs in speeds.items():
            for beam, out in runs.items():
                start = time.perf_counter()
                with torch.inference_mode() if mode == "inference_mode" else nullcontext():
                    translator.translate(lines, beam=beam)
                out.append(len(lines) / (time.perf_counter() - start))
    print(json.dumps({**{mode: {beam: {"runs": [round(x, 1) for x in v], "median": round(statistics.median(v), 1)}
                                for beam, v in runs.items()} for mode, runs in speeds.items()},
                      "machine": machine(), "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
