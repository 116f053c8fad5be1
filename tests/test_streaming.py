"""Continuous batching over a Translator: requests join a running search and leave as they end."""

import pytest
import torch

from mt.decoding.search import SearchConfig
from mt.decoding.streaming import StreamingTranslator
from mt.decoding.translator import Translator
from mt.export import open_translator

GREEDY = SearchConfig(keep_attention=False)


@pytest.fixture(scope="module")
def translator(trained_model_dir) -> Translator:
    torch.set_num_threads(1)
    return open_translator(str(trained_model_dir), "cpu", "fp32")


@pytest.fixture(scope="module")
def lines(corpus_dir) -> list[str]:
    return (corpus_dir / "test.en").read_text().splitlines()[:24]


def _drain(stream: StreamingTranslator, answers: dict) -> int:
    steps = 0
    while stream.busy:
        for key, result in stream.step():
            answers[key] = result
        steps += 1
    return steps


def test_requests_that_arrive_while_others_run_get_what_each_line_gets_alone(translator, lines):
    stream = StreamingTranslator(translator)
    answers: dict = {}
    requests = [lines[i:i + 3] for i in range(0, len(lines), 3)]  # 8 requests of 3 lines, one every 2 steps
    for key, request in enumerate(requests):
        for k, result in stream.submit(key, request, GREEDY):
            answers[k] = result
        for _ in range(2):
            answers.update(dict(stream.step()))
    _drain(stream, answers)
    assert sorted(answers) == list(range(len(requests)))
    for key, request in enumerate(requests):
        assert [hyps[0].text for hyps in answers[key]] == [t.text for t in translator.translate(request)]


def test_sentences_join_in_groups_but_never_wait_past_the_step_limit(translator, lines):
    first = sorted(lines, key=lambda line: -len(translator.translate([line])[0].tgt_ids))[:8]
    assert min(len(t.tgt_ids) for t in translator.translate(first)) >= 6  # none ends in the steps below
    stream = StreamingTranslator(translator, join_share=0.5, max_wait_steps=3)
    stream.submit("first", first, GREEDY)
    stream.step()
    assert stream.searching == 8
    stream.submit("late", lines[8:9], GREEDY)  # 1 waiting < half of 8 searching: it sits out...
    for _ in range(3):
        stream.step()
    assert stream.waiting == 1 and stream.searching == 8
    stream.step()  # ...3 steps at most
    assert stream.waiting == 0 and stream.searching == 9
    stream.submit("group", lines[9:14], GREEDY)  # 5 >= half of the 9 searching: at the next step
    stream.step()
    assert stream.waiting == 0
    answers: dict = {}
    _drain(stream, answers)
    assert set(answers) <= {"first", "late", "group"}


def test_the_token_budget_holds_sentences_back_until_room_is_made(translator, lines):
    pieces = [len(ids) for ids in translator.src_tokenizer.encode(lines[:6])]
    stream = StreamingTranslator(translator, max_tokens=sum(pieces[:3]))
    stream.submit("a", lines[:6], GREEDY)
    stream.step()
    assert stream.searching == 3 and stream.waiting == 3
    answers: dict = {}
    _drain(stream, answers)
    assert [h[0].text for h in answers["a"]] == [t.text for t in translator.translate(lines[:6])]


def test_beam_requests_and_empty_lines_are_answered_at_once(translator, lines):
    stream = StreamingTranslator(translator)
    (key, result), = stream.submit("beam", lines[:2], SearchConfig(beam=3, nbest=2, keep_attention=False))
    assert key == "beam" and [len(hyps) for hyps in result] == [2, 2]
    (key, result), = stream.submit("empty", ["", ""], GREEDY)
    assert key == "empty" and [hyps[0].text for hyps in result] == ["", ""]
    assert not stream.busy
    assert stream.submit("mixed", ["", lines[0]], GREEDY) == []
    answers: dict = {}
    _drain(stream, answers)
    assert [hyps[0].text for hyps in answers["mixed"]] == ["", translator.translate([lines[0]])[0].text]


def test_a_failing_search_fails_its_requests_and_the_next_are_served(translator, lines, monkeypatch):
    stream = StreamingTranslator(translator)
    stream.submit("a", lines[:2], GREEDY)
    stream.submit("b", lines[2:3], GREEDY)
    stream.step()
    real = translator.model.decode_step
    monkeypatch.setattr(translator.model, "decode_step", lambda *a: (_ for _ in ()).throw(MemoryError("boom")))
    failed = dict(stream.step())
    assert set(failed) == {"a", "b"} and all(isinstance(e, MemoryError) for e in failed.values())
    assert not stream.busy
    monkeypatch.setattr(translator.model, "decode_step", real)
    stream.submit("c", lines[3:4], GREEDY)
    answers: dict = {}
    _drain(stream, answers)
    assert answers["c"][0][0].text == translator.translate(lines[3:4])[0].text
