"""``mt evaluate``: BLEU and chrF of a model on a test set (``mt.analysis.evaluate.evaluate``)."""

from __future__ import annotations

import argparse
import json

from mt.cli.flags import add_json_flag, check_file_languages, check_files, model_parser, open_model, search_config


def parser() -> argparse.ArgumentParser:
    evaluate = model_parser("evaluate", "BLEU and chrF (sacrebleu) of the model's translations of --src against "
                            "--ref.")
    evaluate.add_argument("--src", required=True, help="source file, one sentence a line (.gz accepted)")
    evaluate.add_argument("--ref", required=True, help="reference file, line-aligned with --src")
    evaluate.add_argument("--output", help="also write the translations here")
    add_json_flag(evaluate)
    return evaluate


def run(args: list[str]) -> int:
    ns = parser().parse_args(args)
    from mt.analysis.evaluate import evaluate, read_test_set
    from mt.files import write_text_file

    check_files(ns, ["--output", "--json"], ["--src", "--ref"], [ns.model_dir])
    search = search_config(ns, keep_attention=False)
    translator = open_model(ns)
    check_file_languages(ns, translator, [(ns.src, "source"), (ns.ref, "reference")])
    sources, references = read_test_set(ns.src, ns.ref)
    result = evaluate(translator, sources, references, search)
    if ns.output:
        write_text_file(ns.output, "".join(h + "\n" for h in result.hypotheses))
    print(result.report())
    if ns.json:
        write_text_file(ns.json, json.dumps(result.as_dict(ns.model_dir), indent=2))
    return 0
