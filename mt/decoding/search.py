"""Greedy and batched beam search over the model interface.

Both return, for each sentence, the chosen token ids and the attention of the chosen
hypothesis (one row per output token, the final EOS included), so alignments can be
drawn for beam output too.

Beam search keeps ``beam_size`` live hypotheses and the finished ones apart, as fairseq
and JoeyNMT do: a hypothesis that ends leaves the beam for a list of finished ones, and
the beam is refilled from the next-best continuations, so it never shrinks. Finished
hypotheses are ranked by their length-penalised score; ``beam_size=1`` is exactly greedy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from enum import Enum
from typing import Any

import torch
from torch import Tensor

from mt.data.tokenizer import BOS, EOS, PAD
from mt.errors import ConfigError
from mt.models.interface import Seq2SeqModel, select_rows


@dataclass
class Hypothesis:
    """One output. ``score`` means the same for greedy and beam search: the sum of the
    log-probabilities of the output tokens, the EOS included when it ended. ``normalized`` is
    that score divided by the length penalty, what beam search ranks hypotheses by."""

    tokens: list[int]        # output ids, without BOS and EOS
    score: float             # log-probability of tokens (+ EOS)
    attention: Tensor | None  # [len(tokens) + finished, src_len]: rows for the tokens (and EOS)
    finished: bool = True     # False when the search hit its length limit before EOS
    normalized: float = 0.0   # score / length penalty of len(tokens) + finished steps


class LengthPenalty(str, Enum):
    """How a score is divided by its length ``n`` (output steps, EOS included) before
    hypotheses of different lengths are compared; ``alpha`` sets the strength (0: none)."""

    plain = "plain"  # n ** alpha (plain length normalisation; alpha=1 is the mean log-probability)
    gnmt = "gnmt"    # ((5 + n) / 6) ** alpha (Wu et al. 2016)

    def __call__(self, length: float | Tensor, alpha: float) -> float | Tensor:
        base = length if self is LengthPenalty.plain else (5.0 + length) / 6.0
        return base ** alpha


def _log_probs(logits: Tensor) -> Tensor:
    """Log-probabilities of the next token; PAD and BOS are never generated."""
    never = torch.tensor([PAD, BOS], device=logits.device)
    return torch.log_softmax(logits.float().index_fill(1, never, float("-inf")), dim=-1)


def _block_repeats(logp: Tensor, tokens: Tensor, n: int) -> Tensor:
    """Forbid any token that would repeat an n-gram the hypothesis already holds (fairseq's
    ``--no-repeat-ngram-size``). tokens: [rows, steps] output so far; logp: [rows, vocab]."""
    if n <= 0 or tokens.size(1) < n - 1 or tokens.size(1) == 0:
        return logp
    banned_rows, banned_ids = [], []
    for row, seq in enumerate(tokens.tolist()):
        prefix = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
        for j in range(len(seq) - n + 1):
            if tuple(seq[j:j + n - 1]) == prefix:
                banned_rows.append(row)
                banned_ids.append(seq[j + n - 1])
    if banned_rows:
        logp = logp.clone()
        logp[torch.tensor(banned_rows, device=logp.device), torch.tensor(banned_ids, device=logp.device)] = float("-inf")
    return logp


@dataclass(frozen=True)
class SearchConfig:
    """How translations are searched for, built once where the settings arrive (the command
    line, ``train.valid_beam``, a Python call) and passed whole to every search, as
    JoeyNMT's test config and fairseq's SequenceGenerator hold theirs.

    ``beam`` 1 is greedy search; ``nbest`` hypotheses per sentence come from a beam at least
    as wide (a beam of 1 with ``nbest`` N is widened to N). A sentence of n source pieces gets
    at most ``max_len_a * n + max_len_b`` output pieces (fairseq's rule), whatever it is
    batched with. ``length_penalty`` (alpha) with ``penalty`` (plain: length ** alpha; gnmt:
    ((5 + length) / 6) ** alpha) ranks hypotheses; ``no_repeat_ngram`` N forbids repeating any
    N-gram; ``max_tokens`` source pieces per batch (beam search divides it by the beam).
    ``max_input_len``: the most source pieces read of a line (a longer line is cut, with a
    warning naming it), so one runaway line cannot stall a file or a server; a Transformer's
    ``max_positions`` caps it further. ``keep_attention``: keep each output's attention rows
    (heatmaps, alignments, entropy) or drop them as the search goes (plain translation),
    so memory does not grow with output x input."""

    beam: int = 1
    nbest: int = 1
    length_penalty: float = 1.0
    penalty: LengthPenalty = LengthPenalty.plain
    max_len_a: float = 2.0
    max_len_b: int = 10
    no_repeat_ngram: int = 0
    max_tokens: int = 6000
    max_input_len: int = 1024
    keep_attention: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "penalty", LengthPenalty(self.penalty))
        if self.beam < 1:
            raise ConfigError(f"--beam must be at least 1, got {self.beam}")
        if self.nbest < 1:
            raise ConfigError(f"--nbest must be at least 1, got {self.nbest}")
        if self.nbest > self.beam:
            if self.beam != 1:
                raise ConfigError(f"--nbest {self.nbest} needs a beam at least as wide: use --beam {self.nbest} "
                                  "or more")
            object.__setattr__(self, "beam", self.nbest)
        if self.no_repeat_ngram < 0:
            raise ConfigError(f"--no-repeat-ngram must be 0 (off) or more, got {self.no_repeat_ngram}")
        if self.max_len_a < 0 or self.max_len_b < 0 or self.max_len_a == self.max_len_b == 0:
            raise ConfigError(f"--max-len-a {self.max_len_a} --max-len-b {self.max_len_b} allow no output: "
                              "make them positive")
        if self.max_tokens < 1:
            raise ConfigError(f"the batch must hold at least one token, got max_tokens={self.max_tokens}")
        if self.max_input_len < 1:
            raise ConfigError(f"--max-input-len must be at least 1 (source pieces read of a line), got "
                              f"{self.max_input_len}")

    @classmethod
    def of(cls, search: SearchConfig | None = None, **settings: Any) -> SearchConfig:
        """``search`` (or the defaults) with ``settings`` replaced: ``SearchConfig.of(beam=4)``."""
        unknown = set(settings) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown search settings: {', '.join(sorted(unknown))}")
        return replace(search or cls(), **settings)

    def as_record(self) -> dict:
        """The settings that change what comes out (not the batch size), as ``mt compare``
        records keep them: a record is only compared with others searched alike."""
        return {"beam": self.beam, "length_penalty": self.length_penalty, "max_len_a": self.max_len_a,
                "max_len_b": self.max_len_b, "penalty": self.penalty.value, "no_repeat_ngram": self.no_repeat_ngram}


PRUNE_SHARE = 0.5  # greedy search drops its ended rows once they are this share of the batch
GREEDY = SearchConfig()  # the defaults: greedy, a * n + b = 2n + 10, no length penalty beyond plain 1.0


def length_limits(src_mask: Tensor, search: SearchConfig, max_len: int | None = None) -> Tensor:
    """Each sentence's own limit on output steps (fairseq's ``a * src_len + b``; ``max_len``
    caps it), so a translation never depends on the other sentences of its batch. [batch]"""
    limits = (src_mask.sum(dim=1).float() * search.max_len_a + search.max_len_b).floor().long().clamp(min=1)
    return limits.clamp(max=max_len) if max_len is not None else limits


@torch.no_grad()
def greedy_search(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, search: SearchConfig = GREEDY,
                  max_len: int | None = None) -> list[Hypothesis]:
    """The most probable token at each step (``search.beam`` is not read). The length
    penalty only sets ``Hypothesis.normalized``, so greedy and beam output can be compared.
    ``max_len``: the most output steps the model can take (a Transformer's positions).

    A sentence that ends (EOS or its own length limit) is set aside, and the ended rows leave
    the batch once they are half of it (``PRUNE_SHARE``), so a batch of mixed lengths (a
    server's, in arrival order; a whole file's, where one runaway sentence held every row to
    its length limit) stops paying for its longest sentence on every row. Dropping each row as
    it ended, or a quarter at a time, made a 32-sentence RNN batch slower on two threads than
    half at a time (docs/BENCHMARKS.md, 2026-12-01)."""
    limits = length_limits(src_mask, search, max_len)
    src_lens = src_mask.sum(1).tolist()
    alive = torch.arange(src.size(0), device=src.device)                  # the sentence of each row
    active = torch.ones(src.size(0), dtype=torch.bool, device=src.device)  # rows still searching
    memory = model.encode(src, src_mask)
    state = model.init_state(memory)
    prev = torch.full((src.size(0),), BOS, dtype=torch.long, device=src.device)
    scores = torch.zeros(src.size(0), device=src.device)
    tokens = torch.zeros((src.size(0), 0), dtype=torch.long, device=src.device)  # [rows, steps]
    attention: Tensor | None = None                                        # [rows, steps, src_len]
    out: list[Hypothesis | None] = [None] * src.size(0)
    for step in range(1, int(limits.max()) + 1):
        logits, state, attn = model.decode_step(memory, state, prev)
        best, prev = _block_repeats(_log_probs(logits), tokens, search.no_repeat_ngram).max(dim=-1)
        scores += best
        tokens = torch.cat([tokens, prev.unsqueeze(1)], dim=1)
        if search.keep_attention and attn is not None:
            attention = torch.cat([attention, attn.unsqueeze(1)], dim=1) if attention is not None \
                else attn.unsqueeze(1)
        ended = prev == EOS
        done = active & (ended | (limits <= step))  # a sentence at its own limit stops there
        if not bool(done.any()):
            continue
        for i in done.nonzero().squeeze(1).tolist():
            s, eos = int(alive[i]), bool(ended[i])
            steps = tokens.size(1)  # attention rows: the tokens and the EOS step
            attn_rows = attention[i, :, : src_lens[s]].float().cpu() if attention is not None else None
            score = float(scores[i])
            out[s] = Hypothesis(tokens[i, : steps - eos].tolist(), score, attn_rows, eos,
                                score / float(search.penalty(steps, search.length_penalty)))
        active &= ~done
        left = active.nonzero().squeeze(1)
        if left.numel() == 0:
            break
        if (active.numel() - left.numel()) >= PRUNE_SHARE * active.numel():
            alive, active, limits = alive[left], active[left], limits[left]
            prev, scores, tokens = prev[left], scores[left], tokens[left]
            memory, state = select_rows(memory, left), select_rows(state, left)
            attention = attention[left] if attention is not None else None
    assert all(h is not None for h in out)
    return out  # type: ignore[return-value]


@torch.no_grad()
def beam_search(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, search: SearchConfig,
                max_len: int | None = None) -> list[list[Hypothesis]]:
    """Batched beam search of width ``search.beam``: for each sentence its ``search.nbest`` best
    hypotheses, best first by ``Hypothesis.normalized``.

    Each step ranks the 2k best continuations of the k live hypotheses: those that end with
    EOS among the first k are finished, and the first k that do not are the new beam. A
    sentence stops when no live hypothesis can still beat its ``nbest``-th finished one (its
    score can only fall, and the penalty grows at most to that of the length limit), when k
    hypotheses have finished (fairseq's rule), or at its length limit (``max_len_a`` x its
    source length + ``max_len_b``, capped by ``max_len``), where the live ones are kept
    unfinished. It then leaves the batch, so the decoder only runs on sentences still
    searching, and its result never depends on the batch it is in. One function on purpose:
    the bookkeeping of live, finished and departed sentences reads best in one place.
    """
    beam_size, nbest = search.beam, search.nbest
    penalty, length_penalty = search.penalty, search.length_penalty
    batch, k = src.size(0), beam_size
    device = src.device
    src_lens = src_mask.sum(1).tolist()
    limits = length_limits(src_mask, search, max_len)
    finals: list[list[Hypothesis]] = [[] for _ in range(batch)]          # finished, per sentence
    results: list[list[Hypothesis] | None] = [None] * batch
    alive = torch.arange(batch, device=device)                           # sentences still searching
    memory = select_rows(model.encode(src, src_mask), alive.repeat_interleave(k))
    state = model.init_state(memory)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start equal: keep one so the first step has no duplicates
    prev = torch.full((batch * k,), BOS, dtype=torch.long, device=device)
    tokens = torch.zeros((batch * k, 0), dtype=torch.long, device=device)
    attention: Tensor | None = None                                      # [rows, steps, src_len]
    threshold = torch.full((batch,), float("-inf"), device=device)       # nbest-th finished score
    count = torch.zeros(batch, dtype=torch.long, device=device)          # finished hypotheses
    rank = torch.arange(2 * k, device=device)

    def finish(sentence: int, row_tokens: list[int], raw: float, attn_rows: Tensor | None, ended: bool) -> None:
        steps = len(row_tokens) + ended
        attn = attn_rows[:steps, : src_lens[sentence]].float().cpu() if attn_rows is not None else None
        finals[sentence].append(Hypothesis(row_tokens, raw, attn, ended,
                                           raw / float(penalty(max(steps, 1), length_penalty))))

    for step in range(1, int(limits.max()) + 1):
        n = alive.numel()
        offsets = (torch.arange(n, device=device) * k).unsqueeze(1)      # [n, 1]
        logits, state, attn = model.decode_step(memory, state, prev)
        attn = attn if search.keep_attention else None  # dropped at once: memory stays flat
        logp = _block_repeats(_log_probs(logits), tokens, search.no_repeat_ngram)  # [n * k, vocab]
        vocab = logp.size(-1)
        top, flat = (scores.view(-1, 1) + logp).view(n, k * vocab).topk(2 * k, dim=-1)  # [n, 2k]
        origin, word = flat // vocab, flat % vocab
        ends = word == EOS
        # Ended continuations among the first k are finished hypotheses.
        touched = set()
        for i, c in (ends & (rank < k) & torch.isfinite(top)).nonzero().tolist():
            row = i * k + int(origin[i, c])
            with_eos = None
            if attn is not None:
                with_eos = torch.cat([attention[row], attn[row].unsqueeze(0)]) if attention is not None \
                    else attn[row].unsqueeze(0)
            finish(int(alive[i]), tokens[row].tolist(), float(top[i, c]), with_eos, True)
            touched.add(i)
        for i in touched:
            ranked = sorted((h.normalized for h in finals[int(alive[i])]), reverse=True)
            count[i] = len(ranked)
            threshold[i] = ranked[nbest - 1] if len(ranked) >= nbest else float("-inf")
        # The first k continuations that go on are the new beam.
        keep = (ends.long() * 2 * k + rank).argsort(dim=-1)[:, :k]      # [n, k]
        scores = top.gather(1, keep)
        rows = (offsets + origin.gather(1, keep)).view(-1)               # [n * k]
        prev = word.gather(1, keep).view(-1)
        state = select_rows(state, rows)
        tokens = torch.cat([tokens[rows], prev.unsqueeze(1)], dim=1)
        if attn is not None:
            new = attn[rows].unsqueeze(1)
            attention = new if attention is None else torch.cat([attention[rows], new], dim=1)
        at_limit = limits[alive] <= step
        reach = torch.maximum(penalty(torch.full_like(scores[:, 0], step + 1), length_penalty),
                              penalty(limits[alive].float(), length_penalty))
        best_live = scores.max(dim=1).values / reach                     # the most a live one can reach
        done = at_limit | (count >= k) | ((count >= nbest) & (threshold >= best_live))
        if not bool(done.any()):
            continue
        idx = done.nonzero().squeeze(1)
        for i in idx.tolist():
            s = int(alive[i])
            if bool(at_limit[i]):
                for b in range(k):
                    row = i * k + b
                    if math.isfinite(float(scores[i, b])):
                        finish(s, tokens[row].tolist(), float(scores[i, b]),
                               attention[row] if attention is not None else None, False)
            results[s] = sorted(finals[s], key=lambda h: -h.normalized)[:nbest]
        if bool(done.all()):
            break
        left = (~done).nonzero().squeeze(1)
        rows = (left.unsqueeze(1) * k + torch.arange(k, device=device)).view(-1)  # [left * k]
        alive, scores, threshold, count = alive[left], scores[left], threshold[left], count[left]
        memory, state = select_rows(memory, rows), select_rows(state, rows)
        prev, tokens = prev[rows], tokens[rows]
        attention = attention[rows] if attention is not None else None
    assert all(r for r in results)
    return results  # type: ignore[return-value]
