"""Exported models run through ``Translator``'s interface, so every command takes them.

A CTranslate2 export (``mt export --to ctranslate2``) is translated by CTranslate2's own
beam and greedy search, with mt's search settings mapped onto it:

- ``beam``, ``nbest`` and ``max_input_len`` map one to one, and so does ``no_repeat_ngram``
  with one difference: CTranslate2 renormalises the next-token distribution after blocking
  (fairseq and mt do not), so greedy output is the same but scores differ, and beam search
  can rank, hence choose, differently (5 of 100 Multi30k sentences at beam 2, n = 2);
  ``length_penalty`` alpha with the plain penalty is CTranslate2's ``length_penalty``
  (both divide by the length, EOS included, to the power alpha). The GNMT penalty has no
  CTranslate2 counterpart: asked for, it is refused in one line.
- mt's output limit is per sentence (``max_len_a`` x source length + ``max_len_b``);
  CTranslate2's is per call, so sentences are grouped by their limit, which keeps every
  output independent of its batch, as mt's own search is.
- PAD and BOS are never generated (CTranslate2 is told to suppress them), as in mt.
- Attention: the export keeps one map, the mean of the last decoder layer's heads (mt's
  default view); ``attention_maps`` returns it as one layer of one head, and asking for
  another layer or head is refused with the way round it. CTranslate2's batched beam search
  gives the first step's row of another sentence, so that row comes from one greedy step.

An int8 export (``mt export --to int8``) runs in mt's own search, on the CPU, with its linear
layers and GRU/LSTM cells swapped for PyTorch's dynamic int8 ones (int8 weights, activations
quantized per call, fp32 out) that hold exactly the integers and per-row fp32 scales the export
stored (``int8_compute`` with them; tests/test_int8.py checks every layer); embeddings are the
stored integers times their scales, in fp32.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from mt.data.tokenizer import Tokenizer
from mt.decoding.search import LengthPenalty, SearchConfig
from mt.decoding.translator import EXPORT_RUNNERS, Translation, Translator
from mt.errors import MTError
from mt.model_dir import (
    CONFIG,
    INT8_WEIGHTS,
    SRC_SPM,
    TGT_SPM,
    export_info,
    load_int8_dir,
    quantize_rows,
    read_config_and_tokenizers,
)
from mt.precision import ResolvedPrecision

log = logging.getLogger("mt.translate")
# mt precision -> CTranslate2 compute type ('default': as the export stored its weights)
_COMPUTE_TYPES = {"auto": "default", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class ExportedModel:
    """What commands read of ``translator.model`` (size, positions) for an export's engine."""

    def __init__(self, info: dict) -> None:
        self.info = info
        self.max_positions: int | None = info.get("max_positions")

    def num_parameters(self) -> int:
        return int(self.info.get("parameters", 0))

    def eval(self) -> ExportedModel:
        return self


class CT2Translator(Translator):
    """A CTranslate2 export behind ``Translator``'s methods (see the module's notes)."""

    streams = False  # the engine searches whole batches: no step to join

    def __init__(self, engine: Any, info: dict, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, device: str,
                 compute_type: str) -> None:
        super().__init__(ExportedModel(info), src_tokenizer, tgt_tokenizer, "cpu")  # type: ignore[arg-type]
        self.engine = engine
        self.device = torch.device(device)
        self.precision = ResolvedPrecision(compute_type, f"CTranslate2 export ({info.get('quantization')} weights)")
        self._never = [[tgt_tokenizer.sp.id_to_piece(0)], [tgt_tokenizer.sp.id_to_piece(2)]]  # PAD, BOS
        self._eos = tgt_tokenizer.sp.id_to_piece(3)

    @classmethod
    def from_export(cls, path: str, device: str = "auto", precision: str = "auto") -> CT2Translator:
        try:
            import ctranslate2
        except ImportError:
            raise MTError(f"{path} is a CTranslate2 export, which needs the ctranslate2 package: "
                          "pip install 'mt[deploy]' (scripts/setup.sh installs it)") from None
        folder = Path(path)
        _config, src_tokenizer, tgt_tokenizer = read_config_and_tokenizers(
            folder, (CONFIG, SRC_SPM, TGT_SPM, "model.bin"), "a complete CTranslate2 export", "export it again")
        info = export_info(folder)
        assert info is not None
        where = "cuda" if device.startswith("cuda") or (device == "auto" and ctranslate2.get_cuda_device_count()) \
            else "cpu"
        if precision not in _COMPUTE_TYPES:
            raise MTError(f"--precision {precision} is not one of {', '.join(_COMPUTE_TYPES)}")
        compute_type = _COMPUTE_TYPES[precision]
        try:
            # Threads translate batches side by side (inter_threads), one each: on a 2-core Zen 4 an int8
            # model ran 0.58x as fast with 2 threads on one batch as with 1, 1.6x with 2 batches at once
            # (float32: 1.6x and 1.7x); scripts/bench_ct2_threads.py, docs/BENCHMARKS.md.
            engine = ctranslate2.Translator(str(folder), device=where, compute_type=compute_type,
                                            inter_threads=torch.get_num_threads(), intra_threads=1)
        except (RuntimeError, ValueError) as err:
            raise MTError(f"CTranslate2 could not load {folder}: {str(err).splitlines()[0]}; export it again") \
                from None
        return cls(engine, info, src_tokenizer, tgt_tokenizer, where, compute_type)

    # -- searching ---------------------------------------------------------------------
    def check_search(self, search: SearchConfig) -> None:
        self._check(search)

    @staticmethod
    def _check(search: SearchConfig) -> None:
        if search.penalty is not LengthPenalty.plain and search.length_penalty != 0:
            raise MTError("--length-penalty-type gnmt has no CTranslate2 counterpart (it divides by length ** alpha only): "
                          "use --length-penalty-type plain, or the PyTorch model directory")

    def _limit(self, n: int, search: SearchConfig) -> int:
        """Output steps a sentence of ``n`` source pieces may take (mt's length_limits)."""
        limit = max(1, int(np.floor(n * search.max_len_a + search.max_len_b)))
        positions = self.model.max_positions
        return min(limit, positions) if positions is not None else limit

    def translate_nbest(self, lines: Sequence[str], nbest: int | None = None, search: SearchConfig | None = None,
                        **settings: Any) -> list[list[Translation]]:
        search = SearchConfig.of(search, **settings, **({"nbest": nbest} if nbest is not None else {}))
        self._check(search)
        ids = self.source_ids(lines, search)
        results: list[list[Translation] | None] = [None] * len(lines)
        groups: dict[int, list[int]] = {}
        for i, seq in enumerate(ids):
            if not seq:
                results[i] = [Translation(lines[i], "", [], ["</s>"], [], None, 0.0)]
            else:
                groups.setdefault(self._limit(len(seq), search), []).append(i)
        running = []
        for limit, rows in groups.items():  # every group at once: the engine's threads take them side by side
            sources = [self.src_tokenizer.id_to_piece(ids[r]) for r in rows]
            running.append((limit, rows, sources, self.engine.translate_batch(
                sources, asynchronous=True, beam_size=search.beam,
                num_hypotheses=search.nbest, length_penalty=search.length_penalty,
                no_repeat_ngram_size=search.no_repeat_ngram, max_decoding_length=limit, min_decoding_length=0,
                max_input_length=0, return_scores=True, return_attention=search.keep_attention, return_end_token=True,
                max_batch_size=max(search.max_tokens // search.beam, 64), batch_type="tokens",
                suppress_sequences=self._never)))
        for limit, rows, sources, out in running:
            first = self._first_rows(sources) if search.keep_attention and search.beam > 1 else None
            for j, (r, pending) in enumerate(zip(rows, out)):
                result = pending.result()
                hyps = []
                for k, pieces in enumerate(result.hypotheses):
                    ended = bool(pieces) and pieces[-1] == self._eos
                    tgt_ids = [self.tgt_tokenizer.sp.piece_to_id(p) for p in pieces[: len(pieces) - ended]]
                    steps = len(tgt_ids) + ended
                    normalized = float(result.scores[k])
                    score = normalized * float(search.penalty(max(steps, 1), search.length_penalty))
                    attention = None
                    if search.keep_attention and result.attention:
                        attention = np.asarray(result.attention[k], dtype=np.float32)[:steps, : len(ids[r])]
                        if first is not None:
                            attention[0] = first[j]
                    hyps.append(Translation(lines[r], self.tgt_tokenizer.decode([tgt_ids])[0],
                                            self.src_tokenizer.id_to_piece(ids[r]),
                                            self.tgt_tokenizer.id_to_piece(tgt_ids) + (["</s>"] if ended else []),
                                            tgt_ids, attention, score, normalized))
                results[r] = sorted(hyps, key=lambda h: -h.normalized_score)
        return [r for r in results if r is not None]

    def _first_rows(self, sources: list[list[str]]) -> list[np.ndarray]:
        """Each sentence's attention at the first output step. CTranslate2 4.8's batched beam
        search returns another sentence's row there (its first step runs before the beams are
        expanded; measured against mt's own search), and every hypothesis shares that step, so
        one greedy step per sentence gives the row."""
        read = self.engine.translate_batch(sources, beam_size=1, max_decoding_length=1, min_decoding_length=0,
                                           return_attention=True, return_end_token=True, max_input_length=0)
        return [np.asarray(r.attention[0], dtype=np.float32)[0, : len(s)] for r, s in zip(read, sources)]

    # -- reading a given output ----------------------------------------------------------
    def _forced(self, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                max_tokens: int) -> list[tuple[float, np.ndarray]]:
        """Log-probability (EOS included) and attention rows (target pieces, then the EOS step)
        of each pair, by scoring it and by a search that must start with it."""
        sources = [self.src_tokenizer.id_to_piece(s) for s in src_ids]
        targets = [self.tgt_tokenizer.id_to_piece(t) for t in tgt_ids]
        scored = self.engine.score_batch(sources, targets, max_batch_size=max_tokens, batch_type="tokens",
                                         max_input_length=0)
        read = self.engine.translate_batch(sources, target_prefix=targets, beam_size=1, return_attention=True,
                                           return_end_token=True,
                                           max_decoding_length=max(len(t) for t in targets) + 1,
                                           min_decoding_length=0, max_input_length=0,
                                           max_batch_size=max_tokens, batch_type="tokens")
        out = []
        for s, t, score, result in zip(src_ids, tgt_ids, scored, read):
            attention = np.asarray(result.attention[0], dtype=np.float32)[: len(t) + 1, : len(s)]
            out.append((float(sum(score.log_probs)), attention))
        return out

    def force_decode_ids(self, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                         max_tokens: int = 6000, layer: int | None = None, head: int | None = None,
                         max_input_len: int = SearchConfig.max_input_len) -> list[tuple[float, np.ndarray | None]]:
        if layer is not None or head is not None:
            raise MTError("a CTranslate2 export keeps one attention map (the mean of the last layer's heads): "
                          "for --layer/--head use the model directory it was exported from")
        out: list[tuple[float, np.ndarray | None]] = [(0.0, None)] * len(src_ids)
        limit, why = self.input_limit(SearchConfig(max_input_len=max_input_len))
        todo = [i for i in range(len(src_ids)) if src_ids[i] and tgt_ids[i]]
        for i in [i for i in todo if len(src_ids[i]) > limit or len(tgt_ids[i]) + 1 > limit]:
            log.warning("pair %d: %d source and %d target pieces, more than %s; left unaligned", i + 1,
                        len(src_ids[i]), len(tgt_ids[i]), why)
        todo = [i for i in todo if len(src_ids[i]) <= limit and len(tgt_ids[i]) + 1 <= limit]
        for start in range(0, len(todo), 256):
            rows = todo[start:start + 256]
            for r, value in zip(rows, self._forced([src_ids[r] for r in rows], [tgt_ids[r] for r in rows],
                                                   max_tokens)):
                out[r] = value
        return out

    def force_decode(self, source: str, reference: str) -> Translation:
        src_ids = self.src_tokenizer.encode([source])[0]
        tgt_ids = self.tgt_tokenizer.encode([reference])[0]
        score, attention = self._forced([src_ids], [tgt_ids], 6000)[0] if src_ids and tgt_ids else (0.0, None)
        return Translation(source, reference, self.src_tokenizer.id_to_piece(src_ids),
                           self.tgt_tokenizer.id_to_piece(tgt_ids) + ["</s>"], tgt_ids, attention, score, score)

    def attention_maps(self, source: str, output_ids: list[int]) -> np.ndarray | None:
        src_ids = self.src_tokenizer.encode([source])[0]
        if not src_ids:
            return None
        if not output_ids:
            read = self.engine.translate_batch([self.src_tokenizer.id_to_piece(src_ids)], beam_size=1,
                                               max_decoding_length=1, min_decoding_length=0, return_attention=True,
                                               return_end_token=True)
            return np.asarray(read[0].attention[0], dtype=np.float32)[:1, : len(src_ids)][None, None]
        return self._forced([src_ids], [output_ids], 6000)[0][1][None, None]  # [1 layer, 1 head, tgt + 1, src]


def load_int8(path: str, device: str = "auto", precision: str = "auto") -> Translator:
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
                      loaded.config.train.alignment_shift)


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
    GRU/LSTM cells (scripts/bench_int8_engines.py, docs/BENCHMARKS.md). Per row rather than
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


EXPORT_RUNNERS["ctranslate2"] = CT2Translator.from_export
EXPORT_RUNNERS["int8"] = load_int8
