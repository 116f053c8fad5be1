"""Which dynamic int8 engine an int8 export should compute with, measured: PyTorch's
``torch.ao.quantization.quantize_dynamic`` (fbgemm/x86; deprecated in torch 2.13 but
maintained for CPU, and the only one with int8 GRU/LSTM cells) against torchao's
``Int8DynamicActivationInt8WeightConfig`` (linear layers only), beside fp32.

    .venv/bin/python studies/deployment_speed/int8_engines.py RUN/model [RUN2/model] --threads 1 --rounds 3 \
        --json studies/deployment_speed/results/DATE_int8_engines_CPU.jsonl

Each model's int8 export is loaded once per engine (the same int8 weights), and the first
``--lines`` sentences of Multi30k test 2016 (``--multi30k``, by default ``../shared/data/multi30k``)
are translated greedily, engines alternating within each round; prints sentences/s (median over
rounds) and BLEU of each engine.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from sacrebleu import corpus_bleu

from mt.api import Translator, export_int8, int8_compute, load_int8_dir, machine

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "multi30k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--json", help="append the results here")
    parser.add_argument("--multi30k", type=Path, default=DATA, help="Multi30k's folder (test_2016_flickr.{en,de}.gz)")
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    src = gzip.decompress((ns.multi30k / "test_2016_flickr.en.gz").read_bytes()).decode().splitlines()[: ns.lines]
    ref = gzip.decompress((ns.multi30k / "test_2016_flickr.de.gz").read_bytes()).decode().splitlines()[: ns.lines]
    for model_dir in ns.models:
        with tempfile.TemporaryDirectory() as tmp:
            out = export_int8(model_dir, Path(tmp) / "int8")
            info = json.loads((out / "export.json").read_text())
            loaded = load_int8_dir(out, info["aliases"])
        engines = {"fp32 (int8 weights dequantized)": loaded.model,
                   "torch.ao quantize_dynamic": int8_compute(copy.deepcopy(loaded.model))}
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torchao_model = copy.deepcopy(loaded.model)
                quantize_(torchao_model, Int8DynamicActivationInt8WeightConfig())
            engines["torchao Int8DynamicActivationInt8Weight"] = torchao_model
        except ImportError:
            print("torchao is not installed: pip install torchao", file=sys.stderr)
        translators = {name: Translator(m, loaded.src_tokenizer, loaded.tgt_tokenizer) for name, m in engines.items()}
        for t in translators.values():
            t.translate(src[:20], keep_attention=False)
        rates: dict[str, list[float]] = {name: [] for name in translators}
        bleu = {}
        for _ in range(ns.rounds):
            for name, t in translators.items():
                start = time.perf_counter()
                out_lines = [o.text for o in t.translate(src, keep_attention=False)]
                rates[name].append(len(src) / (time.perf_counter() - start))
                bleu[name] = round(corpus_bleu(out_lines, [ref]).score, 2)
        for name in translators:
            row = {"model": model_dir, "preset": loaded.config.model.name, "engine": name, "threads": ns.threads,
                   "sentences_per_s": round(statistics.median(rates[name]), 1),
                   "runs": [round(r, 1) for r in rates[name]], "bleu": bleu[name], "lines": len(src),
                   "torch": torch.__version__, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
            print(f"{loaded.config.model.name:16s} {name:42s} {row['sentences_per_s']:7.1f} sent/s  BLEU {bleu[name]}")
            if ns.json:
                with open(ns.json, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
