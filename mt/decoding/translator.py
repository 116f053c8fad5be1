"""Text in, text out: pre-processing, batching by length, search, post-processing.

Training validation, ``mt translate``, ``mt evaluate``, ``mt align`` and the demo all
go through this one class, so a sentence is tokenized the same way on every path.
Output order is input order; an empty input line gives an empty output line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from mt.data.batching import collate, token_batches
from mt.data.tokenizer import PAD, Tokenizer
from mt.decoding.search import Hypothesis, SearchConfig, beam_search, greedy_search
from mt.errors import MTError
from mt.hardware import resolve_device
from mt.model_dir import export_format, load_model_dir, readable_dir
from mt.models import Seq2SeqModel
from mt.precision import FP32, ResolvedPrecision, resolve_precision

log = logging.getLogger("mt.translate")

@dataclass
class Translation:
    source: str
    text: str                    # detokenized output
    src_pieces: list[str]        # subwords the model read
    tgt_pieces: list[str]        # subwords it wrote, then "</s>" if it ended
    tgt_ids: list[int]           # the ids of those subwords (without "</s>")
    attention: np.ndarray | None  # [len(tgt_pieces), len(src_pieces)]
    score: float                 # log-probability of the output (EOS included), greedy or beam
    normalized_score: float = 0.0  # score / length penalty: what beam search ranks by


class Translator:
    streams: ClassVar[bool] = True  # its model runs mt's own step-by-step search (continuous batching can join it)
    def __init__(self, model: Seq2SeqModel, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer,
                 device: str | torch.device = "cpu", precision: ResolvedPrecision = FP32,
                 alignment_shift: bool = False, languages: tuple[str, str] = ("", "")) -> None:
        """``alignment_shift``: its attention was supervised on the step that reads each target
        word (train.alignment_shift), so alignment reads it with Shift-Att unless told otherwise.
        ``languages``: (source, target) codes of the pair it translates, as its config says."""
        self.alignment_shift = alignment_shift
        self.languages = languages
        self.model = model
        self.src_tokenizer = src_tokenizer
        self.tgt_tokenizer = tgt_tokenizer
        self.device = torch.device(device)
        self.precision = precision

    @classmethod
    def from_dir(cls, path: str, device: str = "auto", precision: str = "auto") -> Translator:
        """A model directory (an export too: ``mt.export.open_translator`` opens either).
        ``device``: auto (a GPU when there is one), cpu, cuda, cuda:N. ``precision``: auto (bf16
        where the hardware computes it natively, else fp32), fp32, bf16, fp16."""
        path = str(readable_dir(path))
        kind = export_format(path)
        if kind is not None:
            raise MTError(f"{path} is a {kind} export: open it with mt.export.open_translator, which runs it "
                          "by its engine")
        device = resolve_device(device, "--device")
        loaded = load_model_dir(path, device)
        return cls(loaded.model, loaded.src_tokenizer, loaded.tgt_tokenizer, device,
                   resolve_precision(precision, device), loaded.config.train.alignment_shift,
                   (loaded.config.data.src_lang, loaded.config.data.tgt_lang))

    def translation(self, source: str, src_ids: list[int], hyp: Hypothesis) -> Translation:
        """A search's hypothesis as text, pieces and attention."""
        attention = hyp.attention.numpy() if hyp.attention is not None else None
        return Translation(
            source=source,
            text=self.tgt_tokenizer.decode([hyp.tokens])[0],
            src_pieces=self.src_tokenizer.id_to_piece(src_ids),
            tgt_pieces=self.tgt_tokenizer.id_to_piece(hyp.tokens) + (["</s>"] if hyp.finished else []),
            tgt_ids=list(hyp.tokens),
            attention=attention,
            score=hyp.score,
            normalized_score=hyp.normalized,
        )

    def translate(self, lines: Sequence[str], search: SearchConfig | None = None, **settings: Any) -> list[Translation]:
        """One translation per line, in order, searched as ``search`` says (SearchConfig; its
        fields may also be given as keywords: ``translate(lines, beam=4)``). A line longer than
        the model can read (``model.max_positions``) is cut to that length with a warning naming
        the line; the others are translated as usual."""
        search = SearchConfig.of(search, **settings)
        return [hyps[0] for hyps in self.translate_nbest(lines, search=replace(search, nbest=1))]

    @torch.no_grad()
    def translate_nbest(self, lines: Sequence[str], nbest: int | None = None, search: SearchConfig | None = None,
                        **settings: Any) -> list[list[Translation]]:
        """The ``nbest`` (or ``search.nbest``) best translations of each line, best first by
        ``normalized_score``; the beam is that wide unless the search says wider. An empty
        line gives one empty translation."""
        search = SearchConfig.of(search, **settings, **({"nbest": nbest} if nbest is not None else {}))
        self.model.eval()
        ids = self.source_ids(lines, search)
        limit = self.model.max_positions  # output steps a Transformer can take
        results: list[list[Translation] | None] = [None] * len(lines)
        todo = [i for i, seq in enumerate(ids) if seq]
        for i, seq in enumerate(ids):
            if not seq:
                results[i] = [Translation(lines[i], "", [], ["</s>"], [], None, 0.0)]
        # Beam search multiplies the rows, so batches shrink with the beam.
        for batch_idx in token_batches([len(ids[i]) for i in todo], [0] * len(todo),
                                       max(search.max_tokens // search.beam, 64)):
            rows = [todo[j] for j in batch_idx]
            batch = collate([ids[r] for r in rows]).to(self.device)
            with self.precision.autocast():
                if search.beam == 1:
                    hyps = [[h] for h in greedy_search(self.model, batch.src, batch.src_mask, search, limit)]
                else:
                    hyps = beam_search(self.model, batch.src, batch.src_mask, search, limit)
            for r, hyp in zip(rows, hyps):
                results[r] = [self.translation(lines[r], ids[r], h) for h in hyp]
        return [r for r in results if r is not None]

    def source_ids(self, lines: Sequence[str], search: SearchConfig) -> list[list[int]]:
        """Each line's source pieces, a line past ``input_limit`` cut there with a warning."""
        ids = self.src_tokenizer.encode(lines)
        limit, why = self.input_limit(search)
        for i, seq in enumerate(ids):
            if len(seq) > limit:
                log.warning("line %d: %d source pieces, more than %s; translating its first %d", i + 1, len(seq), why,
                            limit)
                ids[i] = seq[:limit]
        return ids

    def check_search(self, search: SearchConfig) -> None:
        """Raises ``MTError`` naming a setting of ``search`` this translator cannot run (a
        server answers 400 before queueing the request). mt's own search runs them all."""

    def input_limit(self, search: SearchConfig) -> tuple[int, str]:
        """The most source pieces read of a line, and why: ``search.max_input_len`` or the
        model's own ``max_positions``, whichever is smaller."""
        positions = self.model.max_positions
        if positions is not None and positions < search.max_input_len:
            return positions, f"the model reads (model.max_positions={positions})"
        return search.max_input_len, f"--max-input-len={search.max_input_len}"

    @torch.no_grad()
    def attention_maps(self, source: str, output_ids: list[int]) -> np.ndarray | None:
        """All layers' and heads' attention while the model reads ``output_ids`` as its own:
        [layers, heads, len(output_ids) + 1, len(source pieces)], or None without attention."""
        self.model.eval()
        batch = collate(self.src_tokenizer.encode([source]), [output_ids]).to(self.device)
        with self.precision.autocast():
            maps = self.model.attention_maps(batch.src, batch.src_mask, batch.tgt_in)
        return maps[0].float().cpu().numpy() if maps is not None else None

    @torch.no_grad()
    def force_decode_ids(self, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                         max_tokens: int = 6000, layer: int | None = None, head: int | None = None,
                         max_input_len: int = SearchConfig.max_input_len) -> list[tuple[float, np.ndarray | None]]:
        """Teacher-forced attention of many pairs, batched by tokens, in input order: for each,
        the log-probability of the target and its attention [len(target) + 1, len(source)] (one
        row per target piece, then the EOS step). ``layer``/``head`` pick one map of
        ``attention_maps`` (``head=None`` with a layer: the mean of its heads) instead of the
        model's summary map. A pair with an empty side gives (0.0, None), and so does one with a
        side longer than ``max_input_len`` pieces (or the Transformer's positions), with a warning
        naming it."""
        self.model.eval()
        out: list[tuple[float, np.ndarray | None]] = [(0.0, None)] * len(src_ids)
        todo = [i for i in range(len(src_ids)) if src_ids[i] and tgt_ids[i]]
        limit, why = self.input_limit(SearchConfig(max_input_len=max_input_len))
        for i in [i for i in todo if len(src_ids[i]) > limit or len(tgt_ids[i]) + 1 > limit]:
            log.warning("pair %d: %d source and %d target pieces, more than %s; left unaligned", i + 1,
                        len(src_ids[i]), len(tgt_ids[i]), why)
        todo = [i for i in todo if len(src_ids[i]) <= limit and len(tgt_ids[i]) + 1 <= limit]
        for batch_idx in token_batches([len(src_ids[i]) for i in todo], [len(tgt_ids[i]) + 1 for i in todo],
                                       max_tokens):
            rows = [todo[j] for j in batch_idx]
            batch = collate([src_ids[r] for r in rows], [tgt_ids[r] for r in rows]).to(self.device)
            with self.precision.autocast():
                logits, attn = self.model(batch.src, batch.src_mask, batch.tgt_in)
                if layer is not None and attn is not None:
                    maps = self.model.attention_maps(batch.src, batch.src_mask, batch.tgt_in)
                    assert maps is not None
                    if not -maps.size(1) <= layer < maps.size(1):
                        raise MTError(f"layer {layer} does not exist: the model has {maps.size(1)} attention layers")
                    if head is not None and not -maps.size(2) <= head < maps.size(2):
                        raise MTError(f"head {head} does not exist: the model has {maps.size(2)} heads")
                    attn = maps[:, layer].mean(1) if head is None else maps[:, layer, head]
            logp = torch.log_softmax(logits.float(), -1).gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1)
            logp = logp.masked_fill(batch.tgt_out == PAD, 0.0).sum(1)
            for b, r in enumerate(rows):
                weights = (attn[b, : len(tgt_ids[r]) + 1, : len(src_ids[r])].float().cpu().numpy()
                           if attn is not None else None)
                out[r] = (float(logp[b]), weights)
        return out

    @torch.no_grad()
    def force_decode(self, source: str, reference: str) -> Translation:
        """The model's attention while it reads ``reference`` as its own output."""
        self.model.eval()
        src_ids = self.src_tokenizer.encode([source])[0]
        tgt_ids = self.tgt_tokenizer.encode([reference])[0]
        batch = collate([src_ids], [tgt_ids]).to(self.device)
        with self.precision.autocast():
            logits, attn = self.model(batch.src, batch.src_mask, batch.tgt_in)
        logp = torch.log_softmax(logits.float(), -1)[0].gather(-1, batch.tgt_out[0].unsqueeze(-1)).sum()
        hyp = Hypothesis(tgt_ids, float(logp), attn[0].float().cpu() if attn is not None else None)
        translation = self.translation(source, src_ids, hyp)
        translation.text = reference
        return translation



def nbest_lines(translations: Sequence[Sequence[Translation]], first: int = 0) -> str:
    """A Moses/fairseq n-best list: ``i ||| hypothesis ||| log-probability ||| ranking score``,
    ``i`` counting input lines from ``first``."""
    return "".join(f"{first + i} ||| {t.text} ||| {t.score:.4f} ||| {t.normalized_score:.4f}\n"
                   for i, hyps in enumerate(translations) for t in hyps)
