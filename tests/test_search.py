import pytest
import torch

from mt.data.batching import collate
from mt.decoding.search import beam_search, greedy_search
from mt.models import build_model

from .conftest import ALL_VARIANTS, variant_config

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
    beam = beam_search(model, batch.src, batch.src_mask, beam_size=1, max_len=12, length_penalty=0.0)
    assert [h.tokens for h in greedy] == [h.tokens for h in beam]
    for g, b in zip(greedy, beam):
        assert abs(g.score - b.score) < 1e-4
        if g.attention is not None:
            torch.testing.assert_close(g.attention, b.attention)


@pytest.mark.parametrize("variant", KINDS)
def test_batched_beam_equals_one_sentence_at_a_time(variant):
    model = _trained_ish(variant)
    batch = collate(SRC)
    together = beam_search(model, batch.src, batch.src_mask, beam_size=4, max_len=12)
    for i, src in enumerate(SRC):
        single = collate([src])
        alone = beam_search(model, single.src, single.src_mask, beam_size=4, max_len=12)[0]
        assert alone.tokens == together[i].tokens
        assert abs(alone.score - together[i].score) < 1e-4
        torch.testing.assert_close(alone.attention, together[i].attention, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", KINDS)
def test_beam_returns_the_attention_of_the_chosen_hypothesis(variant):
    model = _trained_ish(variant)
    batch = collate(SRC)
    for hyp, src in zip(beam_search(model, batch.src, batch.src_mask, beam_size=3, max_len=12), SRC):
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
    beam = beam_search(model, batch.src, batch.src_mask, beam_size=5, max_len=12, length_penalty=0.0)
    for src, g, b in zip(SRC, greedy, beam):
        if len(g.tokens) < 12 and len(b.tokens) < 12:  # both ended with EOS
            assert logprob(src, b.tokens) >= logprob(src, g.tokens) - 1e-4


@pytest.mark.parametrize("variant", ["bahdanau-gru", "transformer"])
def test_a_sentence_translation_does_not_depend_on_its_batch(variant):
    from mt.data.tokenizer import EOS

    model = _trained_ish(variant)
    step = model.decode_step

    def never_ends(memory, state, prev):  # every search runs to the sentence's own limit
        logits, state, attn = step(memory, state, prev)
        return logits.index_fill(1, torch.tensor([EOS]), -1e4), state, attn

    model.decode_step = never_ends
    short, long = [12, 13], list(range(5, 25))
    for search in (lambda b, **kw: greedy_search(model, b.src, b.src_mask, **kw),
                   lambda b, **kw: beam_search(model, b.src, b.src_mask, beam_size=3, **kw)):
        alone = search(collate([short]))[0]
        together = search(collate([short, long]))
        assert len(alone.tokens) == 2 * 2 + 10 and not alone.finished
        assert together[0].tokens == alone.tokens and len(together[1].tokens) == 2 * 20 + 10
        # fairseq's a * src_len + b, per sentence.
        custom = search(collate([short, long]), max_len_a=1.5, max_len_b=3)
        assert [len(h.tokens) for h in custom] == [6, 33]
