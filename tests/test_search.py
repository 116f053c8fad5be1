import pytest
import torch

from mt.data.batching import collate
from mt.decoding.search import RunningGreedy, SearchConfig, beam_search, greedy_search
from mt.models import build_model

from .conftest import ALL_VARIANTS, variant_config


def _beam(model, batch, beam_size, max_len=None, nbest=1, **settings):
    """Every sentence's n-best list from a beam of ``beam_size`` (settings: SearchConfig's)."""
    return beam_search(model, batch.src, batch.src_mask, SearchConfig(beam=beam_size, nbest=nbest, **settings), max_len)


def _best(model, batch, beam_size, max_len=None, **settings):
    return [hyps[0] for hyps in _beam(model, batch, beam_size, max_len, **settings)]


def _greedy(model, batch, max_len=None, **settings):
    return greedy_search(model, batch.src, batch.src_mask, SearchConfig(**settings), max_len)

SRC = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]
KINDS = ["bahdanau-gru", "luong-general", "luong-local", "transformer"]


def _trained_ish(variant: str):
    """A random model with a sharpened output layer, so search has real choices."""
    torch.manual_seed(3)
    model = build_model(variant_config(variant), 40, 30).eval()
    output = model.output if hasattr(model, "output") else model.decoder.output
    with torch.no_grad():
        output.weight.mul_(8.0)
    return model


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_beam_one_equals_greedy(variant):
    model = _trained_ish(variant)
    batch = collate(SRC)
    greedy = greedy_search(model, batch.src, batch.src_mask, max_len=12)
    beam = _best(model, batch, 1, max_len=12, length_penalty=0.0)
    assert [h.tokens for h in greedy] == [h.tokens for h in beam]
    for g, b in zip(greedy, beam):
        assert abs(g.score - b.score) < 1e-4
        if g.attention is not None:
            torch.testing.assert_close(g.attention, b.attention)


@pytest.mark.parametrize("variant", KINDS)
def test_batched_beam_equals_one_sentence_at_a_time(variant):
    model = _trained_ish(variant)
    batch = collate(SRC)
    together = _best(model, batch, 4, max_len=12)
    for i, src in enumerate(SRC):
        single = collate([src])
        alone = _best(model, single, 4, max_len=12)[0]
        assert alone.tokens == together[i].tokens
        assert abs(alone.score - together[i].score) < 1e-4
        torch.testing.assert_close(alone.attention, together[i].attention, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", KINDS)
def test_beam_returns_the_attention_of_the_chosen_hypothesis(variant):
    model = _trained_ish(variant)
    batch = collate(SRC)
    for hyp, src in zip(_best(model, batch, 3, max_len=12), SRC):
        assert hyp.attention.shape[1] == len(src)
        assert hyp.attention.shape[0] == len(hyp.tokens) + hyp.finished
        torch.testing.assert_close(hyp.attention.sum(-1), torch.ones(hyp.attention.size(0)))
        # Forced decoding of the chosen output reproduces the beam's attention rows.
        forced = collate([src], [hyp.tokens])
        _, attn = model(forced.src, forced.src_mask, forced.tgt_in)
        rows = hyp.attention.size(0)
        torch.testing.assert_close(attn[0, :rows], hyp.attention, atol=1e-5, rtol=1e-5)


def test_wider_beam_finds_at_least_as_probable_output():
    model = _trained_ish("bahdanau-gru")
    batch = collate(SRC)

    def logprob(src, tokens):
        forced = collate([src], [tokens])
        logits, _ = model(forced.src, forced.src_mask, forced.tgt_in)
        return torch.log_softmax(logits, -1)[0].gather(-1, forced.tgt_out[0].unsqueeze(-1)).sum().item()

    greedy = greedy_search(model, batch.src, batch.src_mask, max_len=12)
    beam = _best(model, batch, 5, max_len=12, length_penalty=0.0)
    for src, g, b in zip(SRC, greedy, beam):
        if len(g.tokens) < 12 and len(b.tokens) < 12:  # both ended with EOS
            assert logprob(src, b.tokens) >= logprob(src, g.tokens) - 1e-4


@pytest.mark.parametrize("variant", ["bahdanau-gru", "transformer"])
def test_a_sentence_translation_does_not_depend_on_its_batch(variant):
    from mt.data.tokenizer import EOS

    model = _trained_ish(variant)
    step = model.decode_step
    rows = []

    def never_ends(memory, state, prev):  # every search runs to the sentence's own limit
        rows.append(prev.size(0))
        logits, state, attn = step(memory, state, prev)
        return logits.index_fill(1, torch.tensor([EOS]), -1e4), state, attn

    model.decode_step = never_ends
    short, long = [12, 13], list(range(5, 25))
    for k, search in ((1, lambda b, **kw: _greedy(model, b, **kw)), (3, lambda b, **kw: _best(model, b, 3, **kw))):
        alone = search(collate([short]))[0]
        rows.clear()
        together = search(collate([short, long]))
        assert len(alone.tokens) == 2 * 2 + 10 and not alone.finished
        assert together[0].tokens == alone.tokens and len(together[1].tokens) == 2 * 20 + 10
        # A sentence that stopped leaves the batch: the decoder runs on the long one alone.
        assert rows == [2 * k] * 14 + [k] * (50 - 14)
        # fairseq's a * src_len + b, per sentence.
        custom = search(collate([short, long]), max_len_a=1.5, max_len_b=3)
        assert [len(h.tokens) for h in custom] == [6, 33]


# A model whose next-token distribution depends only on the previous token: small enough
# to enumerate every output, so beam search can be checked against the exact answer.
class MarkovModel(torch.nn.Module):
    max_positions = None

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table  # [vocab, vocab] logits of the next token given the previous one

    def encode(self, src, src_mask):
        return {"mask": src_mask}

    def init_state(self, memory):
        return {"steps": torch.zeros(memory["mask"].size(0), 1)}

    def decode_step(self, memory, state, prev):
        attn = memory["mask"].float() / memory["mask"].sum(1, keepdim=True)
        return self.table[prev], {"steps": state["steps"] + 1}, attn


REAL = [3, 4, 5, 6]  # EOS, A, B, C (UNK is never likely)


def _markov(seed: int) -> MarkovModel:
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(7, 7, generator=g) * 2.0
    table[:, [0, 1, 2]] = float("-inf")  # PAD, UNK, BOS
    return MarkovModel(table)


def _exhaustive(model: MarkovModel, limit: int, alpha: float, penalty) -> list[tuple[float, list[int]]]:
    """Every output up to the limit with its normalised score, best first."""
    import itertools

    from mt.decoding.search import _log_probs

    logp = _log_probs(model.table)
    outputs = []
    for length in range(limit + 1):
        for seq in itertools.product(REAL[1:], repeat=length):
            path = [2, *seq] + ([3] if length < limit else [])
            raw = sum(float(logp[a, b]) for a, b in itertools.pairwise(path))
            outputs.append((raw / float(penalty(len(path) - 1, alpha)), list(seq)))
    return sorted(outputs, key=lambda o: -o[0])


@pytest.mark.parametrize("penalty,alpha", [("plain", 0.0), ("plain", 1.0), ("plain", 2.0), ("gnmt", 0.6),
                                           ("plain", -0.5)])
def test_a_wide_beam_finds_the_exact_best_outputs(penalty, alpha):
    """With a beam wider than every prefix, the early stop (no live hypothesis can beat the
    best finished) must never lose the true best: checked against exhaustive search."""
    from mt.decoding.search import LengthPenalty

    lp = LengthPenalty(penalty)
    for seed in range(6):
        model = _markov(seed)
        batch = collate([[5, 6]])
        hyps = _beam(model, batch, 128, nbest=3, max_len_a=0, max_len_b=4, length_penalty=alpha, penalty=lp)[0]
        exact = _exhaustive(model, 4, alpha, lp)[:3]
        assert [h.normalized for h in hyps] == pytest.approx([e[0] for e in exact], abs=1e-5)
        assert hyps[0].tokens == exact[0][1]


def test_finished_hypotheses_leave_the_beam_to_the_live_ones():
    """k=2: after step 1 the best is to stop (p 0.4); A (0.35) leads nowhere and B (0.25)
    ends surely next step, the best by mean log-probability. A beam where the stopped one
    keeps its slot never reaches B; a beam of two live hypotheses does."""
    table = torch.full((7, 7), float("-inf"))
    table[2, [3, 4, 5]] = torch.tensor([0.4, 0.35, 0.25]).log()      # after BOS: EOS, A, B
    table[4, [3, 4, 5, 6]] = torch.tensor([0.3, 0.25, 0.25, 0.2]).log()  # after A: unsure
    table[5, [3, 6]] = torch.tensor([0.99, 0.01]).log()                # after B: stop
    table[6, [3, 6]] = torch.tensor([0.5, 0.5]).log()
    model = MarkovModel(table)
    batch = collate([[5, 6]])
    best, second = _beam(model, batch, 2, nbest=2, length_penalty=1.0)[0]
    assert best.tokens == [5] and best.finished
    assert best.score == pytest.approx(float(torch.tensor(0.25 * 0.99).log()), abs=1e-5)
    assert best.normalized == pytest.approx(best.score / 2, abs=1e-6)
    assert second.tokens == [] and second.normalized == pytest.approx(float(torch.tensor(0.4).log()), abs=1e-5)


def test_gnmt_length_penalty():
    from mt.decoding.search import LengthPenalty

    model = _markov(1)
    batch = collate([[5, 6, 7]])
    for hyp in (_best(model, batch, 3, length_penalty=0.6, penalty=LengthPenalty.gnmt)[0],
                _greedy(model, batch, length_penalty=0.6, penalty=LengthPenalty.gnmt)[0]):
        steps = len(hyp.tokens) + hyp.finished
        assert hyp.normalized == pytest.approx(hyp.score / ((5 + steps) / 6) ** 0.6, abs=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram(n):
    table = torch.full((7, 7), -5.0)
    table[:, [0, 1, 2]] = float("-inf")
    table[:, 3] = -8.0         # almost never stops
    table[4, 5] = table[5, 4] = 3.0  # A B A B A B ...
    table[2, 4] = 3.0
    model = MarkovModel(table)
    batch = collate([[5, 6, 7, 8]])
    free = _greedy(model, batch)[0].tokens
    assert free[:4] == [4, 5, 4, 5]  # repeats without the rule
    for hyp in (_greedy(model, batch, no_repeat_ngram=n)[0], _best(model, batch, 3, no_repeat_ngram=n)[0]):
        grams = [tuple(hyp.tokens[i:i + n]) for i in range(len(hyp.tokens) - n + 1)]
        assert len(grams) == len(set(grams)) and len(hyp.tokens) >= n


def test_nbest_is_sorted_distinct_and_bounded_by_the_beam():
    from mt.errors import ConfigError

    model = _trained_ish("bahdanau-gru")
    batch = collate(SRC)
    for hyps in _beam(model, batch, 5, nbest=4, max_len=12):
        assert len(hyps) == 4
        assert [h.normalized for h in hyps] == sorted((h.normalized for h in hyps), reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 4
    with pytest.raises(ConfigError, match="--nbest 3 needs a beam at least as wide"):
        _beam(model, batch, 2, nbest=3)
    assert SearchConfig(nbest=3).beam == 3  # a beam of 1 with an n-best list is widened to it


@pytest.mark.parametrize("variant", ["bahdanau-gru", "transformer"])
def test_score_is_the_log_probability_for_greedy_and_beam(variant):
    from mt.decoding.search import _log_probs  # search never writes PAD or BOS

    model = _trained_ish(variant)
    batch = collate(SRC)
    for hyps in (greedy_search(model, batch.src, batch.src_mask, max_len=12),
                 _best(model, batch, 4, max_len=12)):
        for src, hyp in zip(SRC, hyps):
            if not hyp.finished:
                continue
            forced = collate([src], [hyp.tokens])
            logits, _ = model(forced.src, forced.src_mask, forced.tgt_in)
            logp = _log_probs(logits[0]).gather(-1, forced.tgt_out[0].unsqueeze(-1)).sum().item()
            assert hyp.score == pytest.approx(logp, abs=1e-4)


@pytest.mark.parametrize("variant,ngram", [(v, 0) for v in ALL_VARIANTS] + [("bahdanau-gru", 2), ("transformer", 2)])
def test_sentences_that_join_a_running_search_get_what_they_get_alone(variant, ngram):
    """Continuous batching: sentences added while others are part-way (so the Transformer's
    caches are padded and masked, and memories of different lengths joined) come out as they do
    searched alone: the same tokens, scores and attention, and each is given back the step it ends."""
    model = _trained_ish(variant)
    sources = SRC + [[18, 19, 20, 21, 22, 23, 24, 25, 26], [27], [5, 9, 13, 17, 21]]
    search = SearchConfig(max_len_a=1.0, max_len_b=4, no_repeat_ngram=ngram)
    alone = [_greedy(model, collate([src]), 12, max_len_a=1.0, max_len_b=4, no_repeat_ngram=ngram)[0]
             for src in sources]
    running = RunningGreedy(model, search, 12)
    got, joined_at, ended_at = {}, {}, {}
    plan = {0: [0, 1], 2: [2], 3: [3, 4], 6: [5]}  # step -> sentences that join before it
    step = 0
    while running or any(s >= step for s in plan):
        if step in plan:
            batch = collate([sources[i] for i in plan[step]])
            running.add(batch.src, batch.src_mask, plan[step])
            joined_at.update(dict.fromkeys(plan[step], step))
        for key, hyp in running.step():
            got[key], ended_at[key] = hyp, step + 1
        step += 1
    assert sorted(got) == list(range(len(sources)))
    for i, hyp in enumerate(alone):
        assert got[i].tokens == hyp.tokens, i
        assert got[i].finished == hyp.finished
        assert abs(got[i].score - hyp.score) < 1e-4
        assert ended_at[i] - joined_at[i] == len(hyp.tokens) + hyp.finished  # back the step it ended
        if hyp.attention is not None:
            torch.testing.assert_close(got[i].attention, hyp.attention, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["bahdanau-gru", "transformer"])
def test_a_running_search_sheds_the_rows_and_columns_nobody_needs(variant):
    """Once the long sentences have ended and left, the batch holds only the sentences still
    searching, the source memory is cut to the longest of them, and the Transformer's cache
    holds no column before the oldest row's first step (and no mask once the rows are in step)."""
    model = _trained_ish(variant)
    running = RunningGreedy(model, SearchConfig(max_len_a=0.0, max_len_b=2), 12)  # every sentence: 2 steps
    long = collate([[5] * 9, [6] * 9])
    running.add(long.src, long.src_mask, ["a", "b"])
    running.step()
    short = collate([[7, 8], [9]])
    running.add(short.src, short.src_mask, ["c", "d"])
    if variant == "transformer":
        assert running.state["self_mask"].tolist() == [[True]] * 2 + [[False]] * 2
    assert {key for key, _ in running.step()} == {"a", "b"}  # the long ones end here
    assert len(running) == 2
    running.add(collate([[10]]).src, collate([[10]]).src_mask, ["e"])  # joining drops the ended rows
    assert running.keys == ["c", "d", "e"]
    assert running.memory["mask"].size(1) == 2
    if variant == "transformer":
        assert running.state["self_k0"].size(2) == 1
        assert running.state["self_mask"].tolist() == [[True], [True], [False]]
    assert {key for key, _ in running.step()} == {"c", "d"}
    assert {key for key, _ in running.step()} == {"e"}
    assert not running and running.step() == []
