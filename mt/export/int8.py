"""Any mt model (RNNs too) with int8 weights: about a quarter of the fp32 size on disk, int8
products when it translates.

Every weight matrix (linear layers, embeddings, recurrent cells) is stored as symmetric
int8 with one scale per row, in safetensors beside mt's config and tokenizers; biases and
norms stay fp32. ``mt.decoding.exported`` loads it and computes with PyTorch's dynamic int8
Linear and GRU/LSTM modules built from the stored int8 rows and fp32 scales as they are (per
channel, nothing re-quantized; activations quantized as they come); embeddings are the
stored integers times their scales, in fp32.
"""

from __future__ import annotations

from pathlib import Path

from mt.model_dir import (
    INT8_WEIGHTS,
    check_derived_out,
    load_model_dir,
    save_int8_weights,
    write_derived,
    write_export_files,
)

KIND = "int8 export"


def export_int8(model_dir: str | Path, out: str | Path, force: bool = False) -> Path:
    """Writes the int8 export of ``model_dir`` to ``out``. An earlier int8 export there is
    replaced once the new one is complete (with ``force``, a CTranslate2 export or an average
    too); any other non-empty folder is refused (mt.model_dir.check_derived_out)."""
    source = Path(model_dir)
    check_derived_out(Path(out), KIND, [source], force)
    loaded = load_model_dir(source)

    def write(tmp: Path) -> None:
        aliases = save_int8_weights(loaded.model, tmp / INT8_WEIGHTS)
        write_export_files(tmp, loaded, {"format": "int8", "from": str(source.resolve()), "aliases": aliases,
                                         "weights": "symmetric int8, one fp32 scale per row; biases and norms fp32"})

    return write_derived(Path(out), KIND, write, "the int8 export", force)
