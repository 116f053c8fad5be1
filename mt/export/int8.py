"""Any mt model (RNNs too) with int8 weights: a third of the fp32 size on disk, int8 products
when it translates.

Every weight matrix (linear layers, embeddings, recurrent cells) is stored as symmetric
int8 with one scale per row, in safetensors beside mt's config and tokenizers; biases and
norms stay fp32. ``mt.decoding.exported`` loads it, multiplies the integers back by their
scales and hands the model to PyTorch's dynamic int8 quantization (int8 products with
activations quantized as they come), which rounds each row back to the same integers.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from mt import __version__
from mt.config import to_yaml
from mt.model_dir import (
    CONFIG,
    EXPORT_INFO,
    INT8_WEIGHTS,
    SRC_SPM,
    TGT_SPM,
    load_model_dir,
    save_int8_weights,
    written_dir,
)


def export_int8(model_dir: str | Path, out: str | Path) -> Path:
    """Writes the int8 export of ``model_dir`` to ``out`` (replaced once complete)."""
    source = Path(model_dir)
    loaded = load_model_dir(source)

    def write(tmp: Path) -> None:
        aliases = save_int8_weights(loaded.model, tmp / INT8_WEIGHTS)
        (tmp / CONFIG).write_text(to_yaml(loaded.config), encoding="utf-8")
        shutil.copyfile(source / SRC_SPM, tmp / SRC_SPM)
        shutil.copyfile(source / TGT_SPM, tmp / TGT_SPM)
        info = {"format": "int8", "weights": "symmetric int8, one fp32 scale per row; biases and norms fp32",
                "mt": __version__, "from": str(source.resolve()), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                "parameters": loaded.model.num_parameters(), "aliases": aliases}
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")

    return written_dir(Path(out), write, "the int8 export")
