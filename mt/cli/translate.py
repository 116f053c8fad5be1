"""``mt translate``: one sentence a line, in order, from stdin or a file (``Translator.translate``,
or ``translate_nbest`` for n-best lists); typed lines are answered as they come."""

from __future__ import annotations

import argparse
import sys

from mt.cli.flags import check_file_languages, check_files, model_parser, open_model, search_config


def parser() -> argparse.ArgumentParser:
    translate = model_parser("translate", "Translate one sentence a line, in order; an empty line stays empty.")
    translate.add_argument("--input", "-i", help="source file (default: stdin)")
    translate.add_argument("--output", "-o", help="output file (default: stdout)")
    translate.add_argument("--nbest", type=int, default=1, metavar="N",
                           help="write the N best translations of each line as 'i ||| text ||| log-probability ||| "
                           "ranking score' (i counts lines from 0; the beam is at least N wide)")
    return translate


def run(args: list[str]) -> int:
    ns = parser().parse_args(args)
    check_files(ns, ["--output"], ["--input"], [ns.model_dir])
    from mt.data.corpus import read_lines, split_lines
    from mt.decoding.translator import nbest_lines

    search = search_config(ns, nbest=ns.nbest, keep_attention=False)
    translator = open_model(ns)
    check_file_languages(ns, translator, [(ns.input, "source")])

    def translated(lines: list[str], first: int = 0) -> str:
        if search.nbest > 1:
            return nbest_lines(translator.translate_nbest(lines, search=search), first)
        return "".join(t.text + "\n" for t in translator.translate(lines, search))

    if ns.input is None and sys.stdin.isatty():
        # Interactive: answer each line as it is typed.
        print("Type a sentence and press Enter (Ctrl-D to end).", file=sys.stderr)
        for i, line in enumerate(sys.stdin):
            sys.stdout.write(translated([line.rstrip("\n")], i))
            sys.stdout.flush()
        return 0
    text = translated(read_lines(ns.input) if ns.input else split_lines(sys.stdin.read()))
    if ns.output:
        from mt.files import write_text_file

        write_text_file(ns.output, text)  # whole or not at all: the previous file stays until the new one is complete
    else:
        sys.stdout.write(text)
    return 0
