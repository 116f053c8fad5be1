"""Micro-batching: the sentences of concurrent requests to one model, translated together.

A request's lines wait at most ``max_wait`` seconds for others with the same search
settings; a batch takes up to ``max_tokens`` source pieces. One worker thread per model
gathers the batches, so the event loop that answers HTTP never blocks on the model; the
search itself runs in a process of its own (``SearchProcess``), for a search is a Python
loop over output steps, and in the server's process it would hold the interpreter's lock
that the event loop needs (measured: the server then used one of two cores). In fp32 the
search is batch-invariant (a sentence's output does not depend on what it is batched with),
so a sentence gets what ``mt translate`` gives it alone (tests/test_serve.py checks that under
load). In bf16 it almost is: the products' rounding depends on the batch's padded length, so
a few sentences in a thousand can come out differently alone (docs/BENCHMARKS.md,
``scripts/batch_invariance.py``). The queue is bounded in sentences: a full one refuses new
work at once (the server answers 503 with Retry-After) instead of growing without limit.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field, replace

from mt.decoding.search import SearchConfig
from mt.decoding.streaming import StreamingTranslator
from mt.decoding.translator import Translation, Translator

log = logging.getLogger("mt.serve")


class QueueFull(Exception):
    """More sentences are waiting than the queue holds: try again shortly."""


@dataclass
class Job:
    lines: list[str]
    pieces: int                  # source pieces of all lines: what the batch budget counts
    search: SearchConfig
    future: Future = field(default_factory=Future)  # -> list[list[Translation]], n-best per line
    queued_at: float = field(default_factory=time.perf_counter)


BATCHING_MODES = ("continuous", "window", "off")


@dataclass(frozen=True)
class BatchingOptions:
    """``mode``: ``continuous`` (a request's sentences join the running greedy search at its
    next step and leave the step they end; beam and n-best requests run whole between steps),
    ``window`` (requests gathered into batches: ``max_wait`` seconds at most for the requests
    of a steady load to come back, a lone request does not wait; ``min_wait`` seconds every
    batch waits for company), or ``off`` (each request alone: the benchmark's baseline).
    ``max_tokens`` source pieces per batch (continuous: searching at once); ``max_queue``
    sentences waiting at most (continuous: sent to the search and not yet answered)."""

    max_tokens: int = 4096
    max_wait: float = 0.02
    max_queue: int = 2048
    mode: str = "continuous"
    min_wait: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in BATCHING_MODES:
            raise ValueError(f"batching mode must be one of {', '.join(BATCHING_MODES)}, got {self.mode!r}")

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


Search = Callable[[list[str], SearchConfig], list[list[Translation]]]


class SearchProcess:
    """A model directory loaded in a child process that translates the jobs sent over a pipe.

    A job is a whole batch (``__call__``: the window batcher's) or a request that joins the
    child's running search (``submit(..., stream=True)``: continuous batching, answered when
    its last sentence ends, while other requests go on). A reader thread hands each answer
    to its future. The child ignores SIGINT and SIGTERM (the server stops it once its requests
    are done) and ends when the pipe closes. If it dies (killed, out of memory), the jobs it
    held fail with an error and a new child is started for the next. If that one cannot load
    the model either (its directory moved, memory still short), every job fails at once with
    the reason, and a new start is tried at most every ``RETRY_S`` seconds as jobs come."""

    RETRY_S = 5.0

    def __init__(self, model_dir: str, device: str = "auto", precision: str = "auto", threads: int = 0,
                 max_tokens: int = 4096) -> None:
        self._args = (model_dir, device, precision, threads, max_tokens)
        self._context = multiprocessing.get_context("spawn")  # never fork a process that holds torch's threads
        self._lock = threading.Lock()  # the pipe and the pending jobs
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count()
        self._closing = False
        self._broken: str | None = None  # why the last start failed: jobs fail at once with it
        self._tried_at = 0.0
        self._start()
        self._read_from_child()

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_search_loop, args=(child, *self._args), daemon=True,
                                              name="mt-serve-search")
        self._process.start()
        child.close()
        self._conn = parent
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):  # died while loading (out of memory, a crash in torch)
            self._process.join(5)
            status, value = "error", f"it ended while loading (exit status {self._process.exitcode})"
        if status != "ready":
            raise RuntimeError(f"the search process could not load the model: {value}")

    def _read_from_child(self) -> None:
        self._reader = threading.Thread(target=self._read, args=(self._conn,), name="mt-serve-reader", daemon=True)
        self._reader.start()

    def _restart(self) -> None:
        """Under the lock, the child gone: start another, or remember why it could not start."""
        self._tried_at = time.monotonic()
        try:
            self._start()
        except RuntimeError as err:
            self._broken = f"{err}; it is tried again every {self.RETRY_S:g} s as requests come"
            log.error("%s", self._broken)
            return
        self._broken = None
        self._read_from_child()

    def submit(self, lines: list[str], search: SearchConfig, stream: bool = True) -> Future:
        """-> list[list[Translation]], n-best per line."""
        future: Future = Future()
        with self._lock:
            if self._broken is not None and time.monotonic() - self._tried_at >= self.RETRY_S:
                self._restart()
            if self._broken is not None:
                future.set_exception(RuntimeError(self._broken))
                return future
            job = next(self._ids)
            self._pending[job] = future
            try:
                self._conn.send((job, stream, lines, search))
            except OSError:  # the child is gone: the reader fails this job and starts another
                pass
        return future

    def __call__(self, lines: list[str], search: SearchConfig) -> list[list[Translation]]:
        return self.submit(lines, search, stream=False).result()

    def _read(self, conn) -> None:
        """One child's answers, until it ends; then its jobs fail and (not closing) another starts."""
        while True:
            try:
                job, status, value, batch = conn.recv()
            except (EOFError, OSError):
                if self._closing:
                    return
                with self._lock:
                    self._process.join(5)
                    code = self._process.exitcode
                    lost, self._pending = self._pending, {}
                    error = RuntimeError(f"the search process ended (exit status {code}); another is being started")
                    for future in lost.values():
                        with contextlib.suppress(InvalidStateError):
                            future.set_exception(error)
                    log.error("the search process ended (exit status %s); starting another", code)
                    self._restart()
                return
            with self._lock:
                future = self._pending.pop(job, None)
            if future is None or future.cancelled():  # timed out: its answer is not wanted any more
                continue
            future.batch_sentences = batch  # type: ignore[attr-defined]  # the search it ended in: metrics
            with contextlib.suppress(InvalidStateError):
                if status == "ok":
                    future.set_result(value)
                else:
                    future.set_exception(RuntimeError(value))

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()


def _search_loop(conn, model_dir: str, device: str, precision: str, threads: int, max_tokens: int) -> None:
    """The child: whole batches are translated as they come; requests that stream join the
    running search, which takes a step whenever no message waits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        translator = Translator.from_dir(model_dir, device, precision)
        streaming = StreamingTranslator(translator, max_tokens)
    except Exception as err:  # noqa: BLE001 - told to the parent, which names it
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", None))
    with translator.precision.autocast():  # held open: the weights are cast once (see StreamingTranslator)
        _serve_jobs(conn, translator, streaming)


def _serve_jobs(conn, translator: Translator, streaming: StreamingTranslator) -> None:
    def answer(job, result, batch: int) -> None:
        if isinstance(result, Exception):
            conn.send((job, "error", f"{type(result).__name__}: {result}", batch))
        else:
            conn.send((job, "ok", result, batch))

    while True:
        try:
            while conn.poll(0 if streaming.busy else None):
                message = conn.recv()
                if message is None:
                    return
                job, stream, lines, search = message
                if stream:
                    for key, result in streaming.submit(job, lines, search):
                        answer(key, result, len(lines))
                    continue
                try:
                    answer(job, translator.translate_nbest(lines, search=search), len(lines))
                except Exception as err:  # noqa: BLE001 - the batch fails, the process lives on
                    answer(job, err, len(lines))
            for key, result in streaming.step():
                answer(key, result, streaming.last_step)
        except (EOFError, BrokenPipeError):  # the server is gone
            return


class ModelWorker:
    """The queue of one model and one worker thread per search that runs its batches. A search is
    a ``SearchProcess`` (several: batches run side by side, each process with its share of the
    cores), or by default the translator's own search in the worker thread."""

    def __init__(self, translator: Translator, options: BatchingOptions,
                 on_batch: Callable[[int, int], None] | None = None, search: Sequence[Search] | None = None
                 ) -> None:
        self.translator = translator
        self.searches: list[Search] = list(search) if search else \
            [lambda lines, config: translator.translate_nbest(lines, search=config)]
        self.options = options
        self.on_batch = on_batch  # (sentences in the batch, sentences answered) of every batch run: metrics
        self._jobs: deque[Job] = deque()
        self._waiting = 0  # sentences queued
        self._cond = threading.Condition()
        self._stopping = False
        self._busy: dict[int, float] = {}  # search index -> when its batch began
        self._threads = [threading.Thread(target=self._run, args=(search,), name=f"mt-serve-worker-{i}", daemon=True)
                         for i, search in enumerate(self.searches)]
        for thread in self._threads:
            thread.start()

    @property
    def busy_since(self) -> float | None:
        """When the oldest batch still running began (None: no batch runs)."""
        return min(self._busy.values(), default=None)

    @property
    def queued_sentences(self) -> int:
        return self._waiting

    def submit(self, lines: Sequence[str], pieces: int, search: SearchConfig) -> Future:
        job = Job(list(lines), pieces, search)
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if self._waiting and self._waiting + len(job.lines) > self.options.max_queue:
                raise QueueFull(f"{self._waiting} sentences are waiting (the queue holds {self.options.max_queue})")
            self._jobs.append(job)
            self._waiting += len(job.lines)
            self._cond.notify_all()
        return job.future

    def stop(self, timeout: float = 30.0) -> None:
        """Finishes what is queued, then ends the thread (and the search process)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.perf_counter() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.perf_counter()))
        for search in self.searches:
            if isinstance(search, SearchProcess):
                search.close()

    def _take(self, last_done: float, level: int) -> list[Job] | None:
        """The next batch: the oldest job, and (batching on) the queued jobs with its search
        settings that fit the token budget, after waiting up to ``max_wait`` for more.
        ``last_done``, ``level``: when this thread's last batch ended, and how many requests
        were about then."""
        with self._cond:
            while True:
                while not self._jobs:
                    if self._stopping:
                        return None
                    self._cond.wait()
                first = self._jobs[0]
                if self.options.enabled:
                    # Wait for as many requests as were about at the end of the last batch (those it
                    # answered, whose clients send again within milliseconds, and those queued), at most
                    # ``max_wait`` from the later of the oldest request's arrival and that batch's end:
                    # without it the two halves of a steady load alternate in half-size batches, and a
                    # lone client waits for nobody. ``min_wait``: a fixed window every batch waits.
                    fixed_until = first.queued_at + self.options.min_wait
                    adaptive_until = max(first.queued_at, last_done) + self.options.max_wait
                    while not self._stopping and self._pending_pieces(first.search) < self.options.max_tokens:
                        now = time.perf_counter()
                        if now < fixed_until:
                            self._cond.wait(fixed_until - now)
                        elif now < adaptive_until and self._pending_jobs(first.search) < level:
                            self._cond.wait(adaptive_until - now)
                        else:
                            break
                    if not any(job is first for job in self._jobs):
                        continue  # another of the model's searches took it while this one waited
                batch, pieces = [], 0
                for job in list(self._jobs):
                    if job.search != first.search:
                        continue
                    if batch and (not self.options.enabled or pieces + job.pieces > self.options.max_tokens):
                        break
                    batch.append(job)
                    pieces += job.pieces
                for job in batch:
                    self._jobs.remove(job)
                    self._waiting -= len(job.lines)
                return batch

    def _pending_jobs(self, search: SearchConfig) -> int:
        return sum(1 for job in self._jobs if job.search == search)

    def _pending_pieces(self, search: SearchConfig) -> int:
        return sum(job.pieces for job in self._jobs if job.search == search)

    def _run(self, search: Search) -> None:
        key = threading.get_ident()
        last_done, level = 0.0, 0
        while (batch := self._take(last_done, level)) is not None:
            jobs = [job for job in batch if job.future.set_running_or_notify_cancel()]  # a timed-out one is skipped
            if not jobs:
                continue
            lines = [line for job in jobs for line in job.lines]
            self._busy[key] = time.perf_counter()
            try:
                results = search(lines, jobs[0].search)
            except Exception as err:
                log.exception("translation failed")
                for job in jobs:
                    job.future.set_exception(err)
                continue
            finally:
                self._busy.pop(key, None)
                with self._cond:
                    last_done, level = time.perf_counter(), len(jobs) + len(self._jobs)
            if self.on_batch is not None:
                self.on_batch(len(lines), len(lines))
            start = 0
            for job in jobs:
                job.future.set_result(results[start:start + len(job.lines)])
                start += len(job.lines)


class StreamingWorker:
    """Continuous batching for one model: each request goes at once to the search process with
    the fewest sentences in hand, joins its running search and is answered when its last
    sentence ends. Same face as ``ModelWorker`` (submit, stop, busy_since, queued_sentences);
    the queue bound counts the sentences sent and not yet answered."""

    def __init__(self, searches: Sequence[SearchProcess], options: BatchingOptions,
                 on_batch: Callable[[int, int], None] | None = None) -> None:
        self.searches = list(searches)
        self.options = options
        self.on_batch = on_batch  # (sentences searching in the step a request ended, its sentences): metrics
        self._lock = threading.Condition()
        self._held = [0] * len(self.searches)  # sentences each search holds
        self._sent: dict[Future, float] = {}    # unanswered request -> when it was sent
        self._stopping = False

    @property
    def busy_since(self) -> float | None:
        """When the oldest request still unanswered was sent (None: none is)."""
        return min(self._sent.values(), default=None)

    @property
    def queued_sentences(self) -> int:
        return sum(self._held)

    def submit(self, lines: Sequence[str], pieces: int, search: SearchConfig) -> Future:
        n = len(lines)
        with self._lock:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            held = sum(self._held)
            if held and held + n > self.options.max_queue:
                raise QueueFull(f"{held} sentences are being translated (the queue holds {self.options.max_queue})")
            j = min(range(len(self.searches)), key=self._held.__getitem__)
            self._held[j] += n
        future = self.searches[j].submit(list(lines), replace(search, max_tokens=self.options.max_tokens))
        with self._lock:
            self._sent[future] = time.perf_counter()
        future.add_done_callback(lambda f: self._answered(f, j, n))
        return future

    def _answered(self, future: Future, j: int, n: int) -> None:
        with self._lock:
            self._held[j] -= n
            self._sent.pop(future, None)
            self._lock.notify_all()
        if self.on_batch is not None and not future.cancelled() and future.exception() is None:
            self.on_batch(getattr(future, "batch_sentences", n), n)

    def stop(self, timeout: float = 30.0) -> None:
        """Waits for the requests sent (up to ``timeout`` s), then ends the search processes."""
        with self._lock:
            self._stopping = True
            self._lock.wait_for(lambda: not self._sent, timeout)
        for search in self.searches:
            search.close()


def request_search(base: SearchConfig, beam: int | None, alternatives: int, keep_attention: bool,
                   **settings) -> SearchConfig:
    """A request's search: the server's defaults with the request's beam, n-best and length
    penalty; ``alternatives`` more hypotheses than the best need a beam of at least that many."""
    nbest = 1 + alternatives
    beam = max(beam or base.beam, nbest)
    return replace(base, beam=beam, nbest=nbest, keep_attention=keep_attention,
                   **{k: v for k, v in settings.items() if v is not None})


__all__ = ["BATCHING_MODES", "BatchingOptions", "Job", "ModelWorker", "QueueFull", "SearchProcess", "StreamingWorker",
           "Translation", "request_search"]
