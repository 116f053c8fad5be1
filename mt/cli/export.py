"""``mt export``: a model directory written for deployment, one writer per format of
``mt.export.FORMATS`` (``mt.export.ctranslate2.export_ctranslate2``, ``mt.export.int8.export_int8``);
every command opens the result as it opens a model directory."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from mt.cli.flags import new_parser
from mt.errors import MTError


def parser() -> argparse.ArgumentParser:
    from mt.export import FORMATS

    export = new_parser("export", "Write a model for deployment, which every mt command (translate, evaluate, align, "
                        "compare, serve) runs like a model directory: --to ctranslate2 (Transformers) or --to int8 "
                        "(any model).")
    export.add_argument("model_dir", help="the model directory to export, or its training run's folder (runs/NAME)")
    export.add_argument("--to", required=True, choices=list(FORMATS),
                        help="ctranslate2: a CTranslate2 model (Transformers); int8: any model with int8 weights "
                        "(about a quarter of the size) that translates with int8 products on the CPU")
    export.add_argument("--quantization", default=None,
                        help="for --to ctranslate2, the weight type: int8 (default), int8_float32, int16, float32, "
                        "bfloat16, int8_bfloat16")
    export.add_argument("--out", required=True, help="the directory to write: a new or empty folder, or an earlier "
                        "export of the same kind (replaced once the new one is complete)")
    export.add_argument("--force", action="store_true", help="also replace an export of the other kind or an average "
                        "mt wrote at --out (never a trained model or a folder mt did not write)")
    return export


def _ctranslate2(ns: argparse.Namespace) -> tuple[Path, str]:
    from mt.export.ctranslate2 import export_ctranslate2

    quantization = ns.quantization or "int8"
    out = export_ctranslate2(ns.model_dir, ns.out, quantization, ns.force)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return out, f"CTranslate2 model ({quantization}, {size / 2**20:.1f} MiB)"


def _int8(ns: argparse.Namespace) -> tuple[Path, str]:
    if ns.quantization not in (None, "int8"):
        raise MTError(f"--quantization {ns.quantization} is for --to ctranslate2; --to int8 always writes int8")
    from mt.export.int8 import export_int8

    out = export_int8(ns.model_dir, ns.out, ns.force)
    size = (out / "model.int8.safetensors").stat().st_size
    return out, f"int8 model ({size / 2**20:.2f} MiB of weights)"


# export format (mt.export.FORMATS) -> its writer: the directory written and what it holds
WRITERS: dict[str, Callable[[argparse.Namespace], tuple[Path, str]]] = {"ctranslate2": _ctranslate2, "int8": _int8}


def run(args: list[str]) -> int:
    ns = parser().parse_args(args)
    out, what = WRITERS[ns.to](ns)
    print(f"{what}: {out}\ntranslate with it as with a model directory: mt translate {out} < input.txt")
    return 0
