"""Model directories turned into what deployment uses, and opened again: each format is one module
that writes an export and opens it as a ``Translator`` (CTranslate2 for Transformers, int8 for any
model). ``open_translator`` is what every command loads a model with: a model directory, or an
export, chosen by the ``export.json`` the export wrote."""

from __future__ import annotations

from collections.abc import Callable

from mt.decoding.translator import Translator
from mt.errors import MTError
from mt.export import ctranslate2, int8
from mt.model_dir import export_format, readable_dir

# export format -> (path, device, precision) -> the Translator that runs it
FORMATS: dict[str, Callable[[str, str, str], Translator]] = {
    "ctranslate2": ctranslate2.open_export,
    "int8": int8.open_export,
}


def open_translator(path: str, device: str = "auto", precision: str = "auto") -> Translator:
    """A model directory or an export (``mt export``) as a Translator. ``device``: auto (a GPU when
    there is one), cpu, cuda, cuda:N. ``precision``: auto (bf16 where the hardware computes it
    natively, else fp32), fp32, bf16, fp16."""
    path = str(readable_dir(path))
    kind = export_format(path)
    if kind is None:
        return Translator.from_dir(path, device, precision)
    if kind not in FORMATS:
        raise MTError(f"{path} is a {kind} export, which this mt cannot run: use the model directory it was "
                      "exported from")
    return FORMATS[kind](path, device, precision)
