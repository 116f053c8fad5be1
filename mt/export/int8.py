"""Any mt model (RNNs too) with int8 weights: about a quarter of the fp32 size on disk, int8
products when it translates.

Every weight matrix (linear layers, embeddings, recurrent cells) is stored as symmetric
int8 with one scale per row, in safetensors beside mt's config and tokenizers; biases and
norms stay fp32.

Opened again (``open_export``), an int8 export runs in mt's own search, on the CPU, with its linear
layers and GRU/LSTM cells swapped for PyTorch's dynamic int8 ones (int8 weights, activations
quantized per call, fp32 out) that hold exactly the integers and per-row fp32 scales the export
stored, as they are (per channel, nothing re-quantized; ``int8_compute`` with them;
tests/test_int8.py checks every layer); embeddings are the stored integers times their scales, in fp32.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from mt.decoding.translator import Translator
from mt.errors import MTError
from mt.model_dir import (
    INT8_WEIGHTS,
    check_derived_out,
    export_info,
    load_int8_dir,
    load_model_dir,
    quantize_rows,
    readable_dir,
    save_int8_weights,
    write_derived,
    write_export_files,
)
from mt.precision import ResolvedPrecision

KIND = "int8 export"


def export_int8(model_dir: str | Path, out: str | Path, force: bool = False) -> Path:
    """Writes the int8 export of ``model_dir`` to ``out``. An earlier int8 export there is
    replaced once the new one is complete (with ``force``, a CTranslate2 export or an average
    too); any other non-empty folder is refused (mt.model_dir.check_derived_out)."""
    source = readable_dir(model_dir)  # a run folder: its model/
    check_derived_out(Path(out), KIND, [source], force)
    loaded = load_model_dir(source)

    def write(tmp: Path) -> None:
        aliases = save_int8_weights(loaded.model, tmp / INT8_WEIGHTS)
        write_export_files(tmp, loaded, {"format": "int8", "from": str(source.resolve()), "aliases": aliases,
                                         "weights": "symmetric int8, one fp32 scale per row; biases and norms fp32"})

    return write_derived(Path(out), KIND, write, "the int8 export", force)


def open_export(path: str, device: str = "auto", precision: str = "auto") -> Translator:
    """An int8 export (``mt export --to int8``) as a Translator whose linear layers and
    GRU/LSTM cells compute in int8 with exactly the integers and per-row scales the export
    stored (``int8_compute`` with the stored tensors; CPU only)."""
    if device not in ("auto", "cpu"):
        raise MTError(f"an int8 export runs on the CPU (PyTorch's int8 kernels), not on {device}: use --device cpu, "
                      "or the model directory it was exported from")
    if precision not in ("auto", "fp32"):
        raise MTError(f"an int8 export computes in int8 with fp32 activations: --precision {precision} does not "
                      "apply; leave it at auto")
    info = export_info(path)
    assert info is not None
    aliases = info.get("aliases", {})
    loaded = load_int8_dir(path, aliases)  # checks the files; its matrices (int8 x scale) serve the embeddings
    parameters = loaded.model.num_parameters()
    model = int8_compute(loaded.model, inplace=True, weights=_stored_rows(Path(path) / INT8_WEIGHTS, aliases))
    model.num_parameters = lambda: parameters  # packed int8 weights are no longer nn.Parameters to count
    return Translator(model, loaded.src_tokenizer, loaded.tgt_tokenizer, "cpu",  # type: ignore[arg-type]
                      ResolvedPrecision("int8", "int8 export: dynamic int8 products, fp32 activations"),
                      loaded.config.train.alignment_shift, (loaded.config.data.src_lang, loaded.config.data.tgt_lang))


def _stored_rows(weights: Path, aliases: dict[str, str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{matrix name: (int8 rows, fp32 scales)} of an int8 export's weights file, tied names included."""
    try:
        with safe_open(str(weights), framework="pt") as handle:
            rows = {k[: -len(".int8")]: (handle.get_tensor(k), handle.get_tensor(k[: -len(".int8")] + ".scale"))
                    for k in handle.keys() if k.endswith(".int8")}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise MTError(f"{weights} is damaged ({str(err).splitlines()[0][:120]}): export the model again") from None
    rows.update({alias: rows[name] for alias, name in aliases.items() if name in rows})
    return rows


def _per_row(int8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """A qint8 tensor of these integers, one scale per row (axis 0), zero points 0."""
    return torch._make_per_channel_quantized_tensor(int8.contiguous(), scale.double(),
                                                     torch.zeros(len(scale), dtype=torch.long), 0)


def int8_compute(model: torch.nn.Module, inplace: bool = False,
                 weights: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.nn.Module:
    """``model`` (a copy, unless ``inplace``), in eval mode, with its linear layers and GRU/LSTM
    cells replaced by PyTorch's dynamic int8 ones (int8 products, activations quantized as
    they come). Each weight matrix is symmetric int8 with one fp32 scale per row (per channel,
    axis 0): the integers and scales ``weights`` gives for it by its state-dict name (an int8
    export's, kept exactly), else what ``mt export --to int8`` would store for it
    (``mt.model_dir.quantize_rows``), so ``int8_compute(model)`` computes with the integers of
    the export of ``model``. Biases stay fp32.

    PyTorch's dynamic modules (``torch.ao``) rather than torchao's
    ``Int8DynamicActivationInt8WeightConfig``: measured on Zen 4 they were 1.5x (RNN) and 1.7x
    (Transformer) fp32's speed where torchao gave 0.8x and 1.25x, and only they have int8
    GRU/LSTM cells (studies/deployment_speed/int8_engines.py, docs/lab/benchmarks.md). Per row rather than
    ``quantize_dynamic``'s default of one scale per matrix, which re-rounded an export's
    integers (3.5% kept on a Transformer's feed-forward matrix) and ran no faster."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice: the reason is above
        from torch.ao.nn.quantized import dynamic as nnqd

        if not inplace:
            model = copy.deepcopy(model)
        model.eval()

        def rows(name: str, matrix: torch.Tensor) -> torch.Tensor:
            if weights is None:
                return _per_row(*quantize_rows(matrix))
            if name not in weights:
                raise MTError(f"the int8 weights have no {name}: export the model again")
            return _per_row(*weights[name])

        done: dict[int, torch.nn.Module] = {}  # a module met under two names is quantized once
        quantized: torch.nn.Module
        for name, module in list(model.named_modules(remove_duplicate=False)):
            if id(module) in done:
                quantized = done[id(module)]
            elif type(module) is torch.nn.Linear:
                quantized = nnqd.Linear(module.in_features, module.out_features, bias_=module.bias is not None,
                                        dtype=torch.qint8)
                quantized.set_weight_bias(rows(f"{name}.weight", module.weight),
                                          None if module.bias is None else module.bias.detach().float())
            elif type(module) in (torch.nn.GRU, torch.nn.LSTM):
                quantized = (nnqd.GRU if type(module) is torch.nn.GRU else nnqd.LSTM)(
                    module.input_size, module.hidden_size, module.num_layers, module.bias, module.batch_first,
                    module.dropout, module.bidirectional, dtype=torch.qint8)
                quantized.set_weight_bias({key: rows(f"{name}.{key}", value) if key.startswith("weight_")
                                           else value.detach().float() for key, value in module.named_parameters()})
            else:
                continue
            done[id(module)] = quantized
            if not name:
                return quantized
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, quantized)
    return model
