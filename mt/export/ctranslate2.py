"""An mt Transformer as a CTranslate2 model, built on CTranslate2's own spec API.

CTranslate2 is the inference engine OpenNMT-py, fairseq and Marian deploy with; its
``TransformerSpec`` describes mt's Transformer exactly: pre-norm blocks with a final norm on
each side, ReLU feed-forward, embeddings scaled by sqrt(d) plus mt's own position table
(interleaved sin/cos, or learned; set explicitly, for CTranslate2's built-in table
concatenates sin and cos), the self-attention's query/key/value fused as CTranslate2 wants
them and the cross-attention's key/value already fused in mt. The vocabularies are the
SentencePiece pieces in id order, so CTranslate2's token ids are mt's.

The exported directory is also an mt model directory: it keeps ``config.yaml`` and the two
SentencePiece models beside CTranslate2's files, and ``export.json`` says what it is, so
``mt translate`` / ``evaluate`` / ``align`` / ``compare`` / ``serve`` run it as they run a
PyTorch one (``open_export``, below, through ``mt.export.open_translator``).

command takes it: CTranslate2's own beam and greedy search translate it, with mt's search settings
mapped onto it:
command takes it: CTranslate2's own beam and greedy search translate, with mt's search settings mapped onto it:

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
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mt.config import AttentionReduction, ExperimentConfig
from mt.data.tokenizer import Tokenizer
from mt.decoding.search import LengthPenalty, SearchConfig
from mt.decoding.translator import Translation, Translator
from mt.errors import MTError
from mt.model_dir import (
    CONFIG,
    SRC_SPM,
    TGT_SPM,
    LoadedModel,
    check_derived_out,
    export_info,
    load_model_dir,
    read_config_and_tokenizers,
    readable_dir,
    write_derived,
    write_export_files,
)
from mt.models.transformer import TransformerSeq2Seq
from mt.precision import ResolvedPrecision

log = logging.getLogger("mt.translate")
# mt precision -> CTranslate2 compute type ('default': as the export stored its weights)
_COMPUTE_TYPES = {"auto": "default", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

KIND = "ctranslate2 export"
QUANTIZATIONS = ("float32", "int8", "int8_float32", "int16", "bfloat16", "int8_bfloat16")


def _ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise MTError("exporting to CTranslate2 needs the ctranslate2 package: pip install 'mt[deploy]' "
                      "(scripts/setup.sh installs it)") from None
    return ctranslate2


def exportable(config: ExperimentConfig) -> None:
    """Refuses, in one line naming why, a model CTranslate2 cannot run."""
    if config.model.arch.value != "transformer":
        raise MTError(f"{config.model.name} is an RNN ({config.model.arch.value}) and CTranslate2 runs Transformers "
                      "only: export it with --to int8 instead")
    # CTranslate2 returns the mean of the first N heads of one layer: the last layer's heads
    # (mt's default) and one head 0 (one_head) are that; other maps would come out changed.
    model, reduction = config.model, config.model.attention_reduction
    if reduction is AttentionReduction.all_layers or (reduction is AttentionReduction.one_head
                                                      and model.alignment_head != 0):
        shown = ("all_layers" if reduction is AttentionReduction.all_layers
                 else f"one_head with model.alignment_head={model.alignment_head}")
        raise MTError(f"{model.name} uses attention_reduction={shown}, and CTranslate2 can only return the mean of "
                      "the first heads of one layer, so the export's attention would differ: export it with --to "
                      "int8 instead")


def build_spec(loaded: LoadedModel):
    """The ``TransformerSpec`` of a loaded Transformer, weights filled in (fp32 numpy)."""
    _ctranslate2()
    from ctranslate2.specs import common_spec, transformer_spec

    model = loaded.model
    assert isinstance(model, TransformerSeq2Seq)
    heads = model.decoder[0].self_attn.heads
    one = model.reduction == "one_head"  # head 0 of one layer (exportable refuses others); else the last layer's mean
    spec = transformer_spec.TransformerSpec.from_config(
        (len(model.encoder), len(model.decoder)), heads, pre_norm=True, activation=common_spec.Activation.RELU,
        alignment_layer=model.reduction_layer if one else -1, alignment_heads=1 if one else heads)

    def array(t):
        return t.detach().float().cpu().numpy()

    def linear(s, module, *more):
        s.weight = array(torch.cat([module.weight, *[m.weight for m in more]]))
        if module.bias is not None:
            s.bias = array(torch.cat([module.bias, *[m.bias for m in more]]))

    def norm(s, module):
        s.gamma, s.beta = array(module.weight), array(module.bias)

    def embedding(s, emb):
        tokens = s.embeddings[0] if isinstance(s.embeddings, list) else s.embeddings
        tokens.weight = array(emb.tokens.weight)
        s.scale_embeddings = True  # x sqrt(d), as mt's Embedding
        s.position_encodings.encodings = array(emb.learned.weight if emb.learned is not None else emb.table)

    def self_attention_and_ffn(s, attn, norm_in, ffn_norm, ff):
        """The parts encoder and decoder layers share: self-attention (q, k, v fused) and FFN."""
        norm(s.self_attention.layer_norm, norm_in)
        linear(s.self_attention.linear[0], attn.query, attn.key_value)
        linear(s.self_attention.linear[1], attn.out)
        norm(s.ffn.layer_norm, ffn_norm)
        linear(s.ffn.linear_0, ff[0])
        linear(s.ffn.linear_1, ff[3])

    embedding(spec.encoder, model.src_embed)
    for s, layer in zip(spec.encoder.layer, model.encoder):
        self_attention_and_ffn(s, layer.attn, layer.norm1, layer.norm2, layer.ff)
    norm(spec.encoder.layer_norm, model.encoder_norm)
    embedding(spec.decoder, model.tgt_embed)
    for s, layer in zip(spec.decoder.layer, model.decoder):
        self_attention_and_ffn(s, layer.self_attn, layer.norm1, layer.norm3, layer.ff)
        norm(s.attention.layer_norm, layer.norm2)
        linear(s.attention.linear[0], layer.cross_attn.query)
        linear(s.attention.linear[1], layer.cross_attn.key_value)  # k and v, fused in mt already
        linear(s.attention.linear[2], layer.cross_attn.out)
    norm(spec.decoder.layer_norm, model.decoder_norm)
    linear(spec.decoder.projection, model.output)

    spec.config.layer_norm_epsilon = model.encoder_norm.eps
    spec.config.add_source_eos = False        # mt's sources carry no EOS; decoding starts from BOS (<s>)
    src, tgt = loaded.src_tokenizer, loaded.tgt_tokenizer
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = (src.sp.id_to_piece(i) for i in (1, 2, 3))
    spec.config.decoder_start_token = spec.config.bos_token
    spec.register_source_vocabulary([src.sp.id_to_piece(i) for i in range(len(src))])
    spec.register_target_vocabulary([tgt.sp.id_to_piece(i) for i in range(len(tgt))])
    return spec


def export_ctranslate2(model_dir: str | Path, out: str | Path, quantization: str = "int8",
                       force: bool = False) -> Path:
    """Writes ``out``: CTranslate2's files (``quantization`` of the weights) beside mt's
    config, tokenizers and ``export.json``. An earlier CTranslate2 export at ``out`` is replaced
    once the new one is complete (with ``force``, an int8 export or an average too); any other
    non-empty folder is refused (mt.model_dir.check_derived_out)."""
    if quantization not in QUANTIZATIONS:
        raise MTError(f"--quantization {quantization} is not one CTranslate2 stores: choose one of "
                      f"{', '.join(QUANTIZATIONS)}")
    ct2 = _ctranslate2()
    source = readable_dir(model_dir)  # a run folder: its model/
    check_derived_out(Path(out), KIND, [source], force)
    loaded = load_model_dir(source)
    exportable(loaded.config)
    spec = build_spec(loaded)
    spec.validate()
    spec.optimize(quantization=quantization)
    info = {"format": "ctranslate2", "quantization": quantization, "ctranslate2": ct2.__version__,
            "from": str(source.resolve()), "max_positions": loaded.model.max_positions,
            "attention": "the mean of the last decoder layer's heads"}

    def write(tmp: Path) -> None:
        spec.save(str(tmp))
        write_export_files(tmp, loaded, info)

    return write_derived(Path(out), KIND, write, "the CTranslate2 export", force)


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
        config, src_tokenizer, tgt_tokenizer = read_config_and_tokenizers(
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
            # (float32: 1.6x and 1.7x); studies/deployment_speed/ct2_threads.py, docs/lab/benchmarks.md.
            engine = ctranslate2.Translator(str(folder), device=where, compute_type=compute_type,
                                            inter_threads=torch.get_num_threads(), intra_threads=1)
        except (RuntimeError, ValueError) as err:
            raise MTError(f"CTranslate2 could not load {folder}: {str(err).splitlines()[0]}; export it again") \
                from None
        translator = cls(engine, info, src_tokenizer, tgt_tokenizer, where, compute_type)
        translator.languages = (config.data.src_lang, config.data.tgt_lang)
        return translator

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


open_export = CT2Translator.from_export
