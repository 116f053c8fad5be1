"""Greedy and batched beam search over the model interface.

Both return, for each sentence, the chosen token ids and the attention of the chosen
hypothesis (one row per output token, the final EOS included), so alignments can be
drawn for beam output too. Beam search keeps hypotheses that ended: their score is
frozen and they stay in the beam, competing with live ones, so ``beam_size=1`` is
exactly greedy decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mt.data.tokenizer import BOS, EOS, PAD
from mt.models.interface import Seq2SeqModel, select_rows


@dataclass
class Hypothesis:
    tokens: list[int]        # output ids, without BOS and EOS
    score: float             # sum of log-probabilities (beam: divided by length ** length_penalty)
    attention: Tensor | None  # [len(tokens) + finished, src_len]: rows for the tokens (and EOS)
    finished: bool = True     # False when the search hit its length limit before EOS


def _log_probs(logits: Tensor) -> Tensor:
    """Log-probabilities of the next token; PAD and BOS are never generated."""
    never = torch.tensor([PAD, BOS], device=logits.device)
    return torch.log_softmax(logits.float().index_fill(1, never, float("-inf")), dim=-1)


MAX_LEN_A, MAX_LEN_B = 2.0, 10  # a sentence of n source pieces gets at most a * n + b output steps


def length_limits(src_mask: Tensor, max_len_a: float = MAX_LEN_A, max_len_b: int = MAX_LEN_B,
                  max_len: int | None = None) -> Tensor:
    """Each sentence's own limit on output steps (fairseq's ``a * src_len + b``; ``max_len``
    caps it), so a translation never depends on the other sentences of its batch. [batch]"""
    limits = (src_mask.sum(dim=1).float() * max_len_a + max_len_b).floor().long().clamp(min=1)
    return limits.clamp(max=max_len) if max_len is not None else limits


def _hypotheses(tokens: Tensor, attention: Tensor | None, scores: Tensor, src_lens: Tensor,
                limits: Tensor | None = None) -> list[Hypothesis]:
    """tokens: [n, steps]; attention: [n, steps, src_len]; scores: [n]; limits: [n] steps each may use."""
    out = []
    for row in range(tokens.size(0)):
        ids = tokens[row].tolist()
        if limits is not None:
            ids = ids[: int(limits[row])]
        length = ids.index(EOS) if EOS in ids else len(ids)
        kept = min(length + 1, len(ids))  # attention rows: tokens and the EOS step
        attn = attention[row, :kept, : int(src_lens[row])].float().cpu() if attention is not None else None
        out.append(Hypothesis(ids[:length], float(scores[row]), attn, EOS in ids))
    return out


@torch.no_grad()
def greedy_search(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, max_len: int | None = None,
                  max_len_a: float = MAX_LEN_A, max_len_b: int = MAX_LEN_B) -> list[Hypothesis]:
    """``Hypothesis.score``: the sum of the chosen tokens' log-probabilities (EOS included)."""
    limits = length_limits(src_mask, max_len_a, max_len_b, max_len)
    batch = src.size(0)
    memory = model.encode(src, src_mask)
    state = model.init_state(memory)
    prev = torch.full((batch,), BOS, dtype=torch.long, device=src.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    scores = torch.zeros(batch, device=src.device)
    tokens, attns = [], []
    for step in range(1, int(limits.max()) + 1):
        logits, state, attn = model.decode_step(memory, state, prev)
        best, nxt = _log_probs(logits).max(dim=-1)
        nxt = nxt.masked_fill(finished, PAD)
        scores += best.masked_fill(finished, 0.0)
        tokens.append(nxt)
        attns.append(attn)
        finished |= (nxt == EOS) | (limits <= step)  # a sentence at its own limit stops there
        prev = nxt
        if finished.all():
            break
    attention = torch.stack(attns, 1) if attns[0] is not None else None
    return _hypotheses(torch.stack(tokens, 1), attention, scores, src_mask.sum(1), limits)


@torch.no_grad()
def beam_search(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, beam_size: int,
                max_len: int | None = None, length_penalty: float = 1.0, max_len_a: float = MAX_LEN_A,
                max_len_b: int = MAX_LEN_B) -> list[Hypothesis]:
    """Batched beam search; the final choice divides each score by length ** length_penalty.
    With ``beam_size=1`` it gives greedy's output (the tests check this), only slower.

    A sentence leaves the batch as soon as all its hypotheses have ended (or it reached its
    length limit: ``max_len_a`` x its source length + ``max_len_b``, capped by ``max_len``), so the decoder only
    runs on sentences still searching and a batch's longest sentence no longer holds the
    others. A sentence's result never depends on the batch it is in.
    """
    batch, k = src.size(0), beam_size
    device = src.device
    src_lens = src_mask.sum(1)
    limits = length_limits(src_mask, max_len_a, max_len_b, max_len)
    results: list[Hypothesis | None] = [None] * batch
    alive = torch.arange(batch, device=device)                               # sentences still searching
    memory = select_rows(model.encode(src, src_mask), alive.repeat_interleave(k))
    state = model.init_state(memory)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start equal: keep one so the first step has no duplicates
    prev = torch.full((batch * k,), BOS, dtype=torch.long, device=device)
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    tokens = torch.zeros((batch * k, 0), dtype=torch.long, device=device)
    attention: Tensor | None = None
    beam = torch.arange(k, device=device)
    for step in range(1, int(limits.max()) + 1):
        n = alive.numel()
        offsets = (torch.arange(n, device=device) * k).unsqueeze(1)          # [n, 1]
        logits, state, attn = model.decode_step(memory, state, prev)
        logp = _log_probs(logits)                                           # [n * k, vocab]
        vocab = logp.size(-1)
        # An ended hypothesis may only continue with PAD, at no cost.
        logp = logp.masked_fill(finished.unsqueeze(1), float("-inf"))
        logp[:, PAD] = torch.where(finished, 0.0, logp[:, PAD])
        candidates = (scores.view(-1, 1) + logp).view(n, k * vocab)
        scores, flat = candidates.topk(k, dim=-1)                           # [n, k]
        origin = (offsets + flat // vocab).view(-1)                         # [n * k]
        nxt = (flat % vocab).view(-1)
        state = select_rows(state, origin)
        tokens = torch.cat([tokens[origin], nxt.unsqueeze(1)], dim=1)
        if attn is not None:
            new = attn[origin].unsqueeze(1)
            attention = new if attention is None else torch.cat([attention[origin], new], dim=1)
        finished = finished[origin] | (nxt == EOS)
        prev = nxt
        done = finished.view(n, k).all(dim=1) | (limits[alive] <= step)     # [n]
        if not bool(done.any()):
            continue
        lengths = ((tokens != PAD) & (tokens != EOS)).sum(1).float() + 1.0  # tokens and EOS
        normalised = (scores.view(-1) / lengths.pow(length_penalty)).view(n, k)
        idx = done.nonzero().squeeze(1)
        best = offsets.view(-1)[idx] + normalised[idx].argmax(dim=-1)
        sentences = alive[idx]
        hyps = _hypotheses(tokens[best], attention[best] if attention is not None else None,
                           normalised.view(-1)[best], src_lens[sentences])
        for sentence, hyp in zip(sentences.tolist(), hyps):
            results[sentence] = hyp
        if bool(done.all()):
            break
        keep = (~done).nonzero().squeeze(1)
        rows = (keep.unsqueeze(1) * k + beam).view(-1)                      # [kept * k]
        alive, scores = alive[keep], scores[keep]
        memory, state = select_rows(memory, rows), select_rows(state, rows)
        prev, finished, tokens = prev[rows], finished[rows], tokens[rows]
        attention = attention[rows] if attention is not None else None
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]
