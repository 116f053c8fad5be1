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
a few sentences in a thousand can come out differently alone (docs/lab/benchmarks.md,
``bench/batch_invariance.py``). The queue is bounded in sentences: a full one refuses new
work at once (the server answers 503 with Retry-After) instead of growing without limit.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import multiprocessing
import queue
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
from mt.errors import MTError
from mt.export import open_translator

log = logging.getLogger("mt.serve")


class QueueFull(Exception):
    """More sentences are waiting than the queue holds: try again shortly."""


class SearchUnavailable(RuntimeError):
    """No search process can take the job now: one is starting (after the last one died) or
    the last start failed. ``retry_after``: seconds until one may be up (the server answers
    503 with it as Retry-After)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SearchRejected(ValueError):
    """The search refused the request itself (a setting it does not support): the client's
    fault, not the server's (the server answers 400)."""


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
    its last sentence ends, while other requests go on). ``submit`` never waits on the child:
    a sender thread writes to the pipe (a busy child reads it only between steps, and a full
    pipe blocked the event loop for seconds), a reader thread hands each answer to its future.

    Cancelling a future (``Future.cancel``) tells the child, which drops the request: its
    sentences leave the running search, or a whole batch not begun is skipped (one being
    searched runs to its end). Each future has ``released``, a second future done once the
    child has let go of the job (answered it, confirmed its cancel, or died): a queue bound
    counts the job until then.

    The child ignores SIGINT and SIGTERM (the server stops it once its requests are done) and
    ends when the pipe closes. If it dies (killed, out of memory), the jobs it held fail with a
    RuntimeError and another child is started in the background; until it is ready, ``submit``
    answers at once with a future failed with ``SearchUnavailable``. If that one cannot load
    the model either (its directory moved, memory still short), a new start is tried at most
    every ``RETRY_S`` seconds as jobs come. A job the search refuses (a setting it does not
    support: ValueError or MTError) fails with ``SearchRejected``; any other failure in the
    child is a RuntimeError."""

    RETRY_S = 5.0

    def __init__(self, model_dir: str, device: str = "auto", precision: str = "auto", threads: int = 0,
                 max_tokens: int = 4096) -> None:
        self._args = (model_dir, device, precision, threads, max_tokens)
        self._context = multiprocessing.get_context("spawn")  # never fork a process that holds torch's threads
        self._lock = threading.Lock()  # the child in service, the pending jobs, the start state
        self._pending: dict[int, _Sent] = {}
        self._ids = itertools.count()
        self._closing = False
        self._broken: str | None = None  # why the last start failed: jobs fail at once with it
        self._tried_at = 0.0             # when the last start failed
        self._starting_at: float | None = None  # when the start under way began
        started = time.monotonic()
        self._child: _Child | None = _Child(self._context, self._args)  # None: starting, broken or closed
        self._load_s = time.monotonic() - started  # how long a start takes: the Retry-After while one runs
        self._process = self._child.process  # the last child started
        self._child.serve(self)

    @property
    def available(self) -> bool:
        """A child is up to take jobs (not starting, not failed to start)."""
        return self._child is not None

    def submit(self, lines: list[str], search: SearchConfig, stream: bool = True) -> Future:
        """-> list[list[Translation]], n-best per line. Returns at once; ``future.released``:
        see the class."""
        future: Future = Future()
        future.released = released = Future()  # type: ignore[attr-defined]
        with self._lock:
            child = self._child
            if child is not None:
                job = next(self._ids)
                self._pending[job] = _Sent(future, released, child)
                child.outbox.put(("job", job, stream, lines, search))
            else:
                error, start = self._unavailable()
        if child is None:
            if start:
                threading.Thread(target=self._start, name="mt-serve-start", daemon=True).start()
            future.set_exception(error)
            released.set_result(None)
            return future
        future.add_done_callback(lambda f: self._cancelled(job, f))
        return future

    def _unavailable(self) -> tuple[SearchUnavailable, bool]:
        """Under the lock, no child in service: why, and whether a start is due (the caller
        begins it, out of the lock)."""
        if self._closing:
            return SearchUnavailable("the search process is closed", retry_after=1), False
        now = time.monotonic()
        start = self._starting_at is None and now - self._tried_at >= self.RETRY_S
        if start:
            self._starting_at = now
        if self._starting_at is not None:
            left = self._load_s - (now - self._starting_at)  # a guess from the last load's time
            why = f"{self._broken}; a new start is under way" if self._broken else \
                "the search process ended and is starting again"
            return SearchUnavailable(why, retry_after=1 if left <= 1 else 2), start
        return SearchUnavailable(self._broken or "the search process is not running",
                                 retry_after=max(1, math.ceil(self.RETRY_S - (now - self._tried_at)))), False

    def _start(self) -> None:
        """In a thread of its own, no lock held while the model loads: a child, put in service."""
        started = time.monotonic()
        try:
            child = _Child(self._context, self._args)
        except RuntimeError as err:
            with self._lock:
                self._broken = f"{err}; it is tried again every {self.RETRY_S:g} s as requests come"
                self._tried_at, self._starting_at = time.monotonic(), None
            log.error("%s", self._broken)
            return
        child.serve(self)
        with self._lock:
            self._starting_at = None
            if not self._closing:
                self._child, self._process, self._broken = child, child.process, None
                self._load_s = time.monotonic() - started
                return
        child.stop()  # closed while it loaded

    def _cancelled(self, job: int, future: Future) -> None:
        """A future done: if cancelled, its child is told (the job stays pending until it confirms)."""
        if not future.cancelled():
            return
        with self._lock:
            sent = self._pending.get(job)
            if sent is not None:
                sent.child.outbox.put(("cancel", job))

    def __call__(self, lines: list[str], search: SearchConfig) -> list[list[Translation]]:
        return self.submit(lines, search, stream=False).result()

    def _read(self, child: _Child) -> None:
        """One child's answers, until it ends; then its jobs fail and (not closing) another starts."""
        while True:
            try:
                job, status, value, batch = child.conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                sent = self._pending.pop(job, None)
            if sent is None:  # a cancel confirmed after the answer went
                continue
            if not sent.future.done():
                sent.future.batch_sentences = batch  # type: ignore[attr-defined]  # the search it ended in: metrics
                with contextlib.suppress(InvalidStateError):  # cancelled meanwhile: not wanted any more
                    if status == "ok":
                        sent.future.set_result(value)
                    elif status == "rejected":
                        sent.future.set_exception(SearchRejected(value))
                    elif status == "error":
                        sent.future.set_exception(RuntimeError(value))
            sent.released.set_result(None)
        child.outbox.put(None)  # its sender ends
        with self._lock:
            lost = {job: sent for job, sent in self._pending.items() if sent.child is child}
            for job in lost:
                del self._pending[job]
            restart = self._child is child and not self._closing
            if self._child is child:
                self._child = None
            if restart:
                self._starting_at = time.monotonic()
        child.process.join(5)
        code = child.process.exitcode
        if self._closing:
            error = RuntimeError("the search process was closed")
        else:
            error = RuntimeError(f"the search process ended (exit status {code}); another is being started")
            log.error("the search process ended (exit status %s); starting another", code)
        for sent in lost.values():
            with contextlib.suppress(InvalidStateError):
                sent.future.set_exception(error)
            sent.released.set_result(None)
        if restart:
            self._start()  # this thread's child is gone: it starts the next

    def close(self) -> None:
        with self._lock:
            self._closing = True
            child, self._child = self._child, None
        if child is not None:
            child.stop()


@dataclass
class _Sent:
    future: Future    # the caller's
    released: Future  # done when the child has let go of the job
    child: _Child     # the child it was sent to


class _Child:
    """One search process, its pipe and the thread that writes to it (``outbox``: messages,
    None to end)."""

    def __init__(self, context, args: tuple) -> None:
        parent, child = context.Pipe()
        self.process = context.Process(target=_search_loop, args=(child, *args), daemon=True, name="mt-serve-search")
        self.process.start()
        child.close()
        self.conn = parent
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):  # died while loading (out of memory, a crash in torch)
            self.process.join(5)
            status, value = "error", f"it ended while loading (exit status {self.process.exitcode})"
        if status != "ready":
            self.conn.close()
            raise RuntimeError(f"the search process could not load the model: {value}")

    def serve(self, owner: SearchProcess) -> None:
        threading.Thread(target=self._send, name="mt-serve-sender", daemon=True).start()
        threading.Thread(target=owner._read, args=(self,), name="mt-serve-reader", daemon=True).start()

    def _send(self) -> None:
        while True:
            message = self.outbox.get()
            try:
                self.conn.send(message)  # None: the child ends
            except (OSError, ValueError):  # the child is gone: the reader fails its jobs
                return
            if message is None:
                return

    def stop(self) -> None:
        """Ends the child once it has read what was sent before."""
        self.outbox.put(None)
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()


def _search_loop(conn, model_dir: str, device: str, precision: str, threads: int, max_tokens: int) -> None:
    """The child: whole batches are translated as they come; requests that stream join the
    running search, which takes a step whenever no message waits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        translator = open_translator(model_dir, device, precision)
        streaming = StreamingTranslator(translator, max_tokens)
    except Exception as err:  # noqa: BLE001 - told to the parent, which names it
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", None))
    with translator.precision.autocast():  # held open: the weights are cast once (see StreamingTranslator)
        _serve_jobs(conn, translator, streaming)


def _serve_jobs(conn, translator: Translator, streaming: StreamingTranslator) -> None:
    """Every message waiting is read before work starts (so a cancel reaches the jobs queued
    before it); then the streaming requests join, at most one whole batch runs, and the
    running search takes a step."""
    queued: deque[tuple[int, bool, list[str], SearchConfig]] = deque()  # jobs read, not begun

    def answer(job, result, batch: int, request: bool = True) -> None:
        """``request``: the failure is the job's own (a whole translation or its joining), not
        a running search's."""
        if isinstance(result, Exception):
            status = "rejected" if request and isinstance(result, (ValueError, MTError)) else "error"
            conn.send((job, status, f"{type(result).__name__}: {result}", batch))
        else:
            conn.send((job, "ok", result, batch))

    while True:
        try:
            while conn.poll(0 if streaming.busy or queued else None):
                message = conn.recv()
                if message is None:
                    return
                if message[0] == "cancel":
                    job = message[1]
                    queued = deque(item for item in queued if item[0] != job)
                    streaming.cancel(job)
                    conn.send((job, "cancelled", None, 0))  # let go: answered before or dropped now
                else:
                    queued.append(message[1:])
            while queued:
                job, stream, lines, search = queued.popleft()
                whole = not (stream and streaming.joins(search))
                try:
                    answers = streaming.submit(job, lines, search) if stream else \
                        [(job, translator.translate_nbest(lines, search=search))]
                except Exception as err:  # noqa: BLE001 - this job fails, the process lives on
                    answers = [(job, err)]
                for key, result in answers:
                    answer(key, result, len(lines))
                if whole:
                    break  # read the pipe again before the next whole batch
            for key, result in streaming.step():
                answer(key, result, streaming.last_step, request=False)
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

    def cancel(self, future: Future) -> bool:
        """Gives up the job of ``future`` (call it on a request's timeout, instead of
        ``future.cancel()``): a job still queued leaves the queue now, and its place with it,
        and is never searched (True). A job whose batch is being searched cannot be stopped
        (False): the batch runs to its end and the job's answer is left unread; so does a job
        already answered."""
        if not future.cancel():
            return False
        with self._cond:
            for job in self._jobs:
                if job.future is future:
                    self._jobs.remove(job)
                    self._waiting -= len(job.lines)
                    self._cond.notify_all()
                    break
        return True

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
                if isinstance(err, (ValueError, MTError)) and not isinstance(err, SearchRejected):
                    err = _rejected(err)  # the translator's own search refused the request
                if isinstance(err, SearchRejected):
                    log.warning("a request was refused: %s", err)
                else:
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
    sentence ends. Same face as ``ModelWorker`` (submit, cancel, stop, busy_since,
    queued_sentences); the queue bound counts the sentences sent that their search process has
    not let go of (answered, or dropped when cancelled). A search process that is restarting
    gets no request while another is up."""

    def __init__(self, searches: Sequence[SearchProcess], options: BatchingOptions,
                 on_batch: Callable[[int, int], None] | None = None) -> None:
        self.searches = list(searches)
        self.options = options
        self.on_batch = on_batch  # (sentences searching in the step a request ended, its sentences): metrics
        self._lock = threading.Condition()
        self._held = [0] * len(self.searches)  # sentences each search holds
        self._sent: dict[object, float] = {}    # request its search process holds -> when it was sent
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
        sent = object()  # this request in ``_sent``, until its search process lets go of it
        with self._lock:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            held = sum(self._held)
            if held and held + n > self.options.max_queue:
                raise QueueFull(f"{held} sentences are being translated (the queue holds {self.options.max_queue})")
            up = [j for j, s in enumerate(self.searches) if getattr(s, "available", True)]  # not restarting
            j = min(up or range(len(self.searches)), key=self._held.__getitem__)
            self._held[j] += n
            self._sent[sent] = time.perf_counter()
        try:
            future = self.searches[j].submit(list(lines), replace(search, max_tokens=self.options.max_tokens))
        except BaseException:
            self._released(sent, j, n)
            raise
        getattr(future, "released", future).add_done_callback(lambda _: self._released(sent, j, n))
        future.add_done_callback(lambda f: self._answered(f, n))
        return future

    def cancel(self, future: Future) -> bool:
        """Gives up the request of ``future`` (call it on a request's timeout, instead of
        ``future.cancel()``): True unless it was answered already. Its search process is told
        and drops it, searching or waiting (a whole beam-search batch being searched runs to
        its end); its place in ``max_queue`` (``queued_sentences``, ``busy_since``) is freed
        once the search process confirms, within a step, so a flood of timed-out requests
        cannot pile up work out of the bound's sight. (A ``future.cancel()`` from elsewhere,
        asyncio's ``wait_for`` on ``wrap_future`` included, does the same.)"""
        return future.cancel()

    def _released(self, sent: object, j: int, n: int) -> None:
        with self._lock:
            if self._sent.pop(sent, None) is None:
                return
            self._held[j] -= n
            self._lock.notify_all()

    def _answered(self, future: Future, n: int) -> None:
        if self.on_batch is not None and not future.cancelled() and future.exception() is None:
            self.on_batch(getattr(future, "batch_sentences", n), n)

    def stop(self, timeout: float = 30.0) -> None:
        """Waits for the requests sent (up to ``timeout`` s), then ends the search processes."""
        with self._lock:
            self._stopping = True
            self._lock.wait_for(lambda: not self._sent, timeout)
        for search in self.searches:
            search.close()


def _rejected(err: Exception) -> SearchRejected:
    rejected = SearchRejected(f"{type(err).__name__}: {err}")
    rejected.__cause__ = err
    return rejected


def request_search(base: SearchConfig, beam: int | None, alternatives: int, keep_attention: bool,
                   **settings) -> SearchConfig:
    """A request's search: the server's defaults with the request's beam, n-best and length
    penalty; ``alternatives`` more hypotheses than the best need a beam of at least that many."""
    nbest = 1 + alternatives
    beam = max(beam or base.beam, nbest)
    return replace(base, beam=beam, nbest=nbest, keep_attention=keep_attention,
                   **{k: v for k, v in settings.items() if v is not None})


__all__ = ["BATCHING_MODES", "BatchingOptions", "Job", "ModelWorker", "QueueFull", "SearchProcess", "SearchRejected",
           "SearchUnavailable", "StreamingWorker", "Translation", "request_search"]
