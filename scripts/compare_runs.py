"""Scores several model directories on one test set, as the demo does for two.

    .venv/bin/python scripts/compare_runs.py runs/issue3/*/*/model --out runs/issue3/compare \
        --src data/demo/test.en --ref data/demo/test.de --beam 4

Prints BLEU/chrF, BLEU by source length and example translations; writes scores.csv,
bleu_by_length.csv, bleu_by_length.png, results.json, translations.txt and heatmaps
under --out. Each model is named by its config (model.name).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mt.cli.demo import evaluate_models
from mt.config import ExperimentConfig, load_yaml
from mt.data.corpus import load_parallel_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dirs", nargs="+")
    parser.add_argument("--src", required=True)
    parser.add_argument("--ref", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--beam", type=int, default=4)
    ns = parser.parse_args()
    names = {}
    for d in ns.model_dirs:
        names[load_yaml(Path(d) / "config.yaml", ExperimentConfig).model.name] = d
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    test = load_parallel_files(ns.src, ns.ref)
    print(evaluate_models(names, {"src": test["src"], "tgt": test["tgt"]}, out, ns.beam))


if __name__ == "__main__":
    main()
