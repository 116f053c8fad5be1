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
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

import torch
from torch import Tensor

from mt.data.tokenizer import BOS, EOS, PAD
from mt.errors import ConfigError
from mt.models.interface import Seq2SeqModel, pad_cat, select_rows


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


def _block_repeats(logp: Tensor, tokens: Tensor, n: int, lengths: Tensor | None = None) -> Tensor:
    """Forbid any token that would repeat an n-gram the hypothesis already holds (fairseq's
    ``--no-repeat-ngram-size``). tokens: [rows, steps] output so far (with ``lengths`` [rows],
    each row's own last ``lengths`` columns); logp: [rows, vocab]."""
    if n <= 0 or tokens.size(1) < n - 1 or tokens.size(1) == 0:
        return logp
    banned_rows, banned_ids = [], []
    own = lengths.tolist() if lengths is not None else [tokens.size(1)] * tokens.size(0)
    for row, (seq, length) in enumerate(zip(tokens.tolist(), own)):
        seq = seq[len(seq) - length:]
        prefix = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
        for j in range(len(seq) - n + 1):
            if tuple(seq[j:j + n - 1]) == prefix:
                banned_rows.append(row)
                banned_ids.append(seq[j + n - 1])
    if banned_rows:
        logp = logp.clone()
        logp[torch.tensor(banned_rows, device=logp.device), torch.tensor(banned_ids, device=logp.device)] = float("-inf")
    return logp


# The beam every command (translate, evaluate, align, compare, explore, serve, the demo) searches with
# unless told otherwise: the demo's, near OpenNMT's and fairseq's 5. SearchConfig() itself is greedy,
# as a library call that asks for nothing should be.
DEFAULT_BEAM = 4


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

    # A field with a "flag" is a command-line flag of every command that searches (mt.cli.flags).
    beam: int = field(default=1, metadata={"flag": "--beam", "metavar": "K", "help": "beam size; 1 is greedy search"})
    nbest: int = 1
    length_penalty: float = field(default=1.0, metadata={
        "flag": "--length-penalty", "metavar": "ALPHA",
        "help": "beam hypotheses are ranked by score / penalty(length, ALPHA); 0: by the raw score"})
    penalty: LengthPenalty = field(default=LengthPenalty.plain, metadata={
        "flag": "--length-penalty-type",
        "help": "plain: length ** ALPHA; gnmt: ((5 + length) / 6) ** ALPHA (Wu et al. 2016)"})
    max_len_a: float = field(default=2.0, metadata={
        "flag": "--max-len-a", "metavar": "A", "help": "a sentence of n source pieces gets at most A * n + B output "
        "pieces"})
    max_len_b: int = field(default=10, metadata={"flag": "--max-len-b", "metavar": "B", "help": "see --max-len-a"})
    no_repeat_ngram: int = field(default=0, metadata={
        "flag": "--no-repeat-ngram", "metavar": "N", "help": "never repeat an N-gram in one output; 0: allowed"})
    max_tokens: int = 6000
    max_input_len: int = field(default=1024, metadata={
        "flag": "--max-input-len", "metavar": "N", "help": "read at most N source pieces of a line; a longer line is "
        "cut, with a warning naming it (a Transformer's model.max_positions caps it too)"})
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


class RunningGreedy:
    """Greedy search over a batch that sentences join while it runs (continuous batching): a
    server adds the sentences of each request as it arrives (``add``) and takes each one back
    the step it ends (``step``), so no sentence waits for a batch to form or for the longest
    sentence of its batch. Each row keeps its own step count, length limit and score, so a
    sentence's result does not depend on when it joined or what it ran beside (up to the
    rounding of padded products; docs/lab/benchmarks.md). ``greedy_search`` is this with one ``add``.

    A sentence that ends (EOS or its own length limit) is set aside, and the ended rows leave
    the batch once they are half of it (``PRUNE_SHARE``), or when new sentences join (the
    batch is copied then anyway). Dropping each row as it ended, or a quarter at a time, made
    a 32-sentence RNN batch slower on two threads than half at a time (docs/lab/benchmarks.md,
    2026-12-01)."""

    def __init__(self, model: Seq2SeqModel, search: SearchConfig = GREEDY, max_len: int | None = None) -> None:
        self.model, self.search, self.max_len = model, search, max_len
        self.keys: list[Any] = []          # what each row's sentence is called by the caller
        self.src_lens: list[int] = []
        self.memory: dict[str, Tensor] = {}
        self.state: dict[str, Tensor] = {}
        self.attention: Tensor | None = None  # [rows, steps, src_len], rows that joined later padded at the start
        self._alive = 0                    # rows still searching

    def __len__(self) -> int:
        """Sentences still searching."""
        return self._alive

    @property
    def pieces(self) -> int:
        """Source pieces of the sentences still searching (what a token budget counts)."""
        return sum(n for n, on in zip(self.src_lens, self.active.tolist()) if on) if self._alive else 0

    @torch.no_grad()
    def add(self, src: Tensor, src_mask: Tensor, keys: Sequence[Any]) -> None:
        """Sentences join at the next step. src, src_mask: [n, src_len]; ``keys``: one per row,
        given back with its hypothesis."""
        n, device = src.size(0), src.device
        memory = self.model.encode(src, src_mask)
        state = self.model.init_state(memory)
        new = {"prev": torch.full((n,), BOS, dtype=torch.long, device=device),
               "scores": torch.zeros(n, device=device),
               "steps": torch.zeros(n, dtype=torch.long, device=device),
               "limits": length_limits(src_mask, self.search, self.max_len),
               "active": torch.ones(n, dtype=torch.bool, device=device)}
        if not self.keys:
            self.memory, self.state, self.attention = memory, state, None
            self.tokens = torch.zeros((n, 0), dtype=torch.long, device=device)  # [rows, steps]
            for name, value in new.items():
                setattr(self, name, value)
        else:
            self._keep(self.active.nonzero().squeeze(1))
            self.memory, self.state = self.model.join([self.memory, memory], [self.state, state])
            self.tokens = pad_cat([self.tokens, self.tokens.new_zeros(n, 0)], 1, PAD, left=True)
            for name, value in new.items():
                setattr(self, name, torch.cat([getattr(self, name), value]))
            if self.attention is not None:  # the new rows have no steps yet: all padding
                rows, steps, width = self.attention.shape
                attention = self.attention.new_zeros(rows + n, steps, max(width, src.size(1)))
                attention[:rows, :, :width] = self.attention
                self.attention = attention
        self.keys += list(keys)
        self.src_lens += src_mask.sum(1).tolist()
        self._alive += n

    @torch.no_grad()
    def step(self) -> list[tuple[Any, Hypothesis]]:
        """One output token for every sentence still searching; returns (key, hypothesis) of
        the sentences that ended at it."""
        if not self._alive:
            return []
        search = self.search
        logits, self.state, attn = self.model.decode_step(self.memory, self.state, self.prev)
        best, self.prev = _block_repeats(_log_probs(logits), self.tokens, search.no_repeat_ngram,
                                         self.steps).max(dim=-1)
        self.scores += best
        self.tokens = torch.cat([self.tokens, self.prev.unsqueeze(1)], dim=1)
        self.steps += 1
        if search.keep_attention and attn is not None:
            self.attention = torch.cat([self.attention, attn.unsqueeze(1)], dim=1) if self.attention is not None \
                else attn.unsqueeze(1)
        ended = self.prev == EOS
        done = self.active & (ended | (self.limits <= self.steps))  # a sentence at its own limit stops there
        if not bool(done.any()):
            return []
        out = []
        width = self.tokens.size(1)
        for i in done.nonzero().squeeze(1).tolist():
            eos, steps = bool(ended[i]), int(self.steps[i])  # attention rows: the tokens and the EOS step
            attn_rows = self.attention[i, width - steps:, : self.src_lens[i]].float().cpu() \
                if self.attention is not None else None
            score = float(self.scores[i])
            out.append((self.keys[i], Hypothesis(self.tokens[i, width - steps: width - eos].tolist(), score, attn_rows,
                                                 eos, score / float(search.penalty(steps, search.length_penalty)))))
        self.active &= ~done
        self._alive -= len(out)
        if not self._alive:
            self.keys, self.src_lens, self.memory, self.state, self.attention = [], [], {}, {}, None
        elif self.active.numel() - self._alive >= PRUNE_SHARE * self.active.numel():
            self._keep(self.active.nonzero().squeeze(1))
        return out

    def _keep(self, rows: Tensor) -> None:
        """Only ``rows`` (those still searching) stay in the batch."""
        if rows.numel() == self.active.numel():
            return
        index = rows.tolist()
        self.keys = [self.keys[i] for i in index]
        self.src_lens = [self.src_lens[i] for i in index]
        self.memory, self.state = self.model.join([select_rows(self.memory, rows)], [select_rows(self.state, rows)])
        self.prev, self.scores, self.steps = self.prev[rows], self.scores[rows], self.steps[rows]
        self.limits, self.active = self.limits[rows], self.active[rows]
        # the columns before the longest row's first step are padding for every row left
        self.tokens = self.tokens[rows][:, self.tokens.size(1) - int(self.steps.max()):]
        if self.attention is not None:
            self.attention = self.attention[rows][:, self.attention.size(1) - int(self.steps.max()):,
                                                  : max(self.src_lens)]


@torch.no_grad()
def greedy_search(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, search: SearchConfig = GREEDY,
                  max_len: int | None = None) -> list[Hypothesis]:
    """The most probable token at each step (``search.beam`` is not read): ``RunningGreedy``
    with every sentence added at once. The length penalty only sets
    ``Hypothesis.normalized``, so greedy and beam output can be compared. ``max_len``: the
    most output steps the model can take (a Transformer's positions)."""
    running = RunningGreedy(model, search, max_len)
    running.add(src, src_mask, range(src.size(0)))
    out: list[Hypothesis | None] = [None] * src.size(0)
    while running:
        for key, hyp in running.step():
            out[key] = hyp
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
