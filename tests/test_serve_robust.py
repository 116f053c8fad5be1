"""The search processes of ``mt serve`` under trouble: a request given up is given up in the
search process too, a dead search process restarts without stalling the callers, a busy one
never blocks ``submit``, and a bad request is told apart from a broken process."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from mt.decoding.search import SearchConfig
from mt.export import open_translator
from mt.serving.batcher import BatchingOptions, ModelWorker, SearchProcess, StreamingWorker

pytestmark = pytest.mark.faults  # search processes killed and cancelled: CI's second tier

GREEDY = SearchConfig(keep_attention=False)
BUDGET = 100  # source pieces searching at once in the shared search process: a long request mostly waits


@pytest.fixture(scope="module")
def lines(corpus_dir) -> list[str]:
    return (corpus_dir / "train.en").read_text().splitlines()


@pytest.fixture(scope="module")
def search(trained_model_dir):
    process = SearchProcess(str(trained_model_dir), threads=1, max_tokens=BUDGET)
    yield process
    process.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_a_cancelled_request_is_dropped_by_the_search_process_and_holds_its_place_until_then(search, lines):
    worker = StreamingWorker([search], BatchingOptions(max_tokens=BUDGET))
    long = worker.submit(lines[:200], 4000, GREEDY)  # ~4 s of search: a few sentences at a time
    time.sleep(0.3)
    assert not long.done() and worker.queued_sentences == 200
    assert worker.cancel(long)
    assert long.cancelled()
    assert worker.queued_sentences == 200  # still the search process's until it confirms...
    assert _wait_until(lambda: worker.queued_sentences == 0, 2)  # ...which it does within a step
    assert worker.busy_since is None
    start = time.perf_counter()
    short = worker.submit(lines[:1], 20, GREEDY)
    assert short.result(timeout=5)[0][0].text
    assert time.perf_counter() - start < 1  # no hidden backlog in front of it
    pid = search._process.pid
    time.sleep(0.05)
    cpu = _cpu_seconds(pid)
    time.sleep(0.5)
    assert _cpu_seconds(pid) - cpu < 0.1  # idle: the cancelled sentences are not searched any more
    assert not worker.cancel(short)  # answered already


def test_a_request_cancelled_mid_search_leaves_the_others_as_they_were(trained_model_dir, lines):
    import torch

    from mt.decoding.streaming import StreamingTranslator

    torch.set_num_threads(1)
    translator = open_translator(str(trained_model_dir), "cpu", "fp32")
    stream = StreamingTranslator(translator, join_share=0.0)
    answers: dict = {}
    for key, request in (("a", lines[0:3]), ("b", lines[3:6]), ("c", lines[6:9])):
        stream.submit(key, request, GREEDY)
        answers.update(dict(stream.step()))
    stream.submit("late", lines[9:11], GREEDY)
    assert stream.cancel("b") and stream.cancel("late")  # searching; waiting
    assert stream.searching == 6 and stream.waiting == 0
    assert not stream.cancel("b")  # given up already
    while stream.busy:
        answers.update(dict(stream.step()))
    assert sorted(answers) == ["a", "c"]
    for key, request in (("a", lines[0:3]), ("c", lines[6:9])):
        assert [hyps[0].text for hyps in answers[key]] == [t.text for t in translator.translate(request)]


def test_a_whole_batch_cancelled_before_it_starts_is_skipped(search, lines):
    beam = SearchConfig(beam=4, keep_attention=False)
    first = search.submit(lines[:100], beam, stream=False)  # ~0.5 s
    second = search.submit(lines * 4, beam, stream=False)  # ~2 s, unless skipped
    assert second.cancel()
    short = search.submit(lines[:1], GREEDY)
    first.result(timeout=30)
    done = time.perf_counter()
    assert short.result(timeout=30)[0][0].text
    assert time.perf_counter() - done < 0.5  # the second batch was not searched in between
    assert second.released.done()  # type: ignore[attr-defined]


def test_a_killed_search_process_restarts_while_submit_fails_fast_with_retry_after(trained_model_dir, lines):
    search = SearchProcess(str(trained_model_dir), threads=1)
    try:
        assert search.submit(lines[:1], GREEDY).result(timeout=30)[0][0].text
        in_flight = search.submit(lines[:200], GREEDY)
        time.sleep(0.1)
        dead = search._process
        os.kill(dead.pid, signal.SIGKILL)
        dead.join(5)
        slowest, outcomes = 0.0, []
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            future = search.submit(lines[:1], GREEDY)
            slowest = max(slowest, time.perf_counter() - start)
            try:
                outcomes.append(future.result(timeout=30))
                break
            except RuntimeError as err:
                outcomes.append(err)
            time.sleep(0.02)
        assert slowest < 0.05, f"submit took {slowest:.3f} s while the search process restarted"
        from mt.serving.batcher import SearchRejected, SearchUnavailable

        assert isinstance(outcomes[-1], list) and outcomes[-1][0][0].text  # the new process serves
        unavailable = [o for o in outcomes if isinstance(o, SearchUnavailable)]
        assert unavailable and all(1 <= o.retry_after <= 30 for o in unavailable)  # the restart was seen
        with pytest.raises(RuntimeError, match="search process ended") as lost:
            in_flight.result(timeout=5)
        assert not isinstance(lost.value, (SearchRejected, SearchUnavailable))
        assert search._process is not dead
    finally:
        search.close()


def test_submit_never_blocks_on_a_busy_search_process(search, lines):
    busy = search.submit(lines[:200], SearchConfig(beam=4, keep_attention=False), stream=False)  # ~1.5 s
    time.sleep(0.2)
    cheap = SearchConfig(keep_attention=False, max_input_len=1, max_len_a=0, max_len_b=1)
    slowest, futures = 0.0, []
    for i in range(30):  # 1.2 MB in all, more than the pipe holds: sending it waits for the child
        big = [f"{i} {j} " + "x " * 1000 for j in range(20)]
        start = time.perf_counter()
        futures.append(search.submit(big, cheap))
        slowest = max(slowest, time.perf_counter() - start)
    assert slowest < 0.05, f"submit blocked {slowest:.3f} s on a busy search process"
    assert not busy.done()
    assert all(len(f.result(timeout=60)) == 20 for f in futures)


def test_a_bad_request_is_rejected_and_a_broken_search_is_an_internal_error(search, lines):
    from mt.serving.batcher import SearchRejected

    bad = SearchConfig(beam=2, keep_attention=False)
    object.__setattr__(bad, "no_repeat_ngram", -1)  # past the settings' own checks: the search refuses it
    with pytest.raises(SearchRejected, match="no-repeat-ngram"):
        search.submit(lines[:2], bad).result(timeout=30)
    assert search.submit(lines[:1], GREEDY).result(timeout=30)[0][0].text  # the process lives on

    def broken(_lines, _config):
        raise RuntimeError("out of memory")

    def refusing(_lines, _config):
        raise ValueError("no such setting")

    for stub, kind in ((broken, RuntimeError), (refusing, SearchRejected)):
        worker = ModelWorker(None, BatchingOptions(mode="off"), search=[stub])  # type: ignore[arg-type]
        try:
            error = worker.submit(["a"], 1, GREEDY).exception(timeout=5)
        finally:
            worker.stop()
        assert type(error) is kind


def test_a_window_batcher_drops_a_cancelled_job_at_once_and_says_when_it_cannot():
    searched: list[list[str]] = []
    release = threading.Event()

    def held(batch: list[str], _config) -> list:
        searched.append(batch)
        release.wait(5)
        return [[f"t:{line}"] for line in batch]

    worker = ModelWorker(None, BatchingOptions(mode="off"), search=[held])  # type: ignore[arg-type]
    try:
        running = worker.submit(["a"], 1, GREEDY)
        assert _wait_until(lambda: searched, 5)
        waiting: Future = worker.submit(["b", "c"], 2, GREEDY)
        assert worker.queued_sentences == 2
        assert worker.cancel(waiting) and waiting.cancelled()
        assert worker.queued_sentences == 0  # its place is free at once: nothing holds it
        assert not worker.cancel(running)  # a batch being searched runs to its end
        release.set()
        assert running.result(timeout=5) == [["t:a"]]
    finally:
        worker.stop()
    assert searched == [["a"]]
