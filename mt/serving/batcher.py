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
import logging
import multiprocessing
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

from mt.decoding.search import SearchConfig
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


@dataclass(frozen=True)
class BatchingOptions:
    """``max_tokens`` source pieces per batch; ``max_wait`` seconds a batch waits at most for the
    requests of a steady load to come back (a lone request does not wait); ``max_queue``
    sentences waiting at most; ``enabled`` False translates each request alone (the
    benchmark's baseline); ``min_wait`` seconds every batch waits for company (throughput
    before latency)."""

    max_tokens: int = 4096
    max_wait: float = 0.02
    max_queue: int = 2048
    enabled: bool = True
    min_wait: float = 0.0


Search = Callable[[list[str], SearchConfig], list[list[Translation]]]


class SearchProcess:
    """A model directory loaded in a child process that runs searches sent over a pipe.

    The child ignores SIGINT and SIGTERM (the server stops it once its requests are done) and
    ends when the pipe closes. If it dies (killed, out of memory), the batch it held fails
    with an error and a new child is started for the next."""

    def __init__(self, model_dir: str, device: str = "auto", precision: str = "auto", threads: int = 0) -> None:
        self._args = (model_dir, device, precision, threads)
        self._context = multiprocessing.get_context("spawn")  # never fork a process that holds torch's threads
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_search_loop, args=(child, *self._args), daemon=True,
                                              name="mt-serve-search")
        self._process.start()
        child.close()
        self._conn = parent
        status, value = self._conn.recv()
        if status != "ready":
            raise RuntimeError(f"the search process could not load the model: {value}")

    def __call__(self, lines: list[str], search: SearchConfig) -> list[list[Translation]]:
        with self._lock:
            try:
                self._conn.send((lines, search))
                status, value = self._conn.recv()
            except (EOFError, OSError):
                code = self._process.exitcode
                self._process.join(5)
                self._start()
                raise RuntimeError(f"the search process ended (exit status {code}); a new one was started") \
                    from None
        if status != "ok":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()


def _search_loop(conn, model_dir: str, device: str, precision: str, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        translator = Translator.from_dir(model_dir, device, precision)
    except Exception as err:  # noqa: BLE001 - told to the parent, which names it
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the server is gone
            return
        if message is None:
            return
        lines, search = message
        try:
            conn.send(("ok", translator.translate_nbest(lines, search=search)))
        except Exception as err:  # noqa: BLE001 - the batch fails, the process lives on
            conn.send(("error", f"{type(err).__name__}: {err}"))


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
        self.on_batch = on_batch  # (sentences, source pieces) of every batch run: metrics
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
                self.on_batch(len(lines), sum(job.pieces for job in jobs))
            start = 0
            for job in jobs:
                job.future.set_result(results[start:start + len(job.lines)])
                start += len(job.lines)


def request_search(base: SearchConfig, beam: int | None, alternatives: int, keep_attention: bool,
                   **settings) -> SearchConfig:
    """A request's search: the server's defaults with the request's beam, n-best and length
    penalty; ``alternatives`` more hypotheses than the best need a beam of at least that many."""
    nbest = 1 + alternatives
    beam = max(beam or base.beam, nbest)
    return replace(base, beam=beam, nbest=nbest, keep_attention=keep_attention,
                   **{k: v for k, v in settings.items() if v is not None})


__all__ = ["BatchingOptions", "Job", "ModelWorker", "QueueFull", "SearchProcess", "Translation", "request_search"]
