"""Requests in, translations out as soon as each request's last sentence ends.

A server's requests arrive one by one, each a sentence or a few. Batching them in windows
makes every sentence wait for its batch to form and then for the longest sentence in it; a
``StreamingTranslator`` instead keeps one running greedy search (``RunningGreedy``) per set of
search settings, adds the sentences of each request at the next step, and answers a request
the step its last sentence ends (continuous batching, as text-generation servers do it).
Requests for beam search or n-best lists, and models run by another engine (``mt export``),
are translated whole, between two steps, by ``Translator.translate_nbest``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch

from mt.data.batching import collate
from mt.decoding.search import Hypothesis, RunningGreedy, SearchConfig
from mt.decoding.translator import Translation, Translator

Answer = tuple[Hashable, list[list[Translation]] | Exception]  # a request's key and its n-best lists (or why not)
JOIN_SHARE = 0.25    # waiting sentences join once they are this share of those searching...
MAX_WAIT_STEPS = 4   # ...or the first of them has sat out this many steps


@dataclass
class _Request:
    key: Hashable
    lines: list[str]
    ids: list[list[int]]
    search: SearchConfig
    arrived: int = 0  # the stream's step count when it came
    results: list[list[Translation] | None] = field(default_factory=list)
    missing: int = 0


class StreamingTranslator:
    """``submit`` requests, call ``step`` while ``busy``; each returns the requests that are done.

    ``max_tokens``: source pieces of the sentences searching at once; more wait, in arrival
    order, until enough have ended. Call it inside ``translator.precision.autocast()`` held
    open, as the server's search process does: autocast casts the weights to bf16 once per
    context, so a context per step re-cast them at every step (1.3x slower for RNN-Bahdanau,
    32 sentences in flight, docs/lab/benchmarks.md). A sentence's output is what
    ``Translator.translate`` gives it alone (in fp32 exactly so far as measured)."""

    def __init__(self, translator: Translator, max_tokens: int = 4096, join_share: float = JOIN_SHARE,
                 max_wait_steps: int = MAX_WAIT_STEPS) -> None:
        self.translator = translator
        translator.model.eval()
        self.max_tokens = max_tokens
        self.join_share, self.max_wait_steps = join_share, max_wait_steps
        self._steps = 0  # steps taken; a waiting sentence records the step it arrived at
        self._running: dict[SearchConfig, RunningGreedy] = {}
        self._waiting: deque[tuple[_Request, int]] = deque()  # sentences not yet searching: (request, line)
        self.last_step = 0  # sentences the last step searched (metrics)

    @property
    def busy(self) -> bool:
        return bool(self._waiting) or any(self._running.values())

    @property
    def searching(self) -> int:
        """Sentences searching now."""
        return sum(len(running) for running in self._running.values())

    @property
    def waiting(self) -> int:
        """Sentences waiting for room in the running searches."""
        return len(self._waiting)

    def joins(self, search: SearchConfig) -> bool:
        """Whether a request searched so joins the running search (greedy, on mt's own search);
        if not, ``submit`` translates it whole before it returns."""
        return search.beam == 1 and self.translator.streams

    def submit(self, key: Hashable, lines: Sequence[str], search: SearchConfig) -> list[Answer]:
        """A request joins; answered at once (returned) when it needs no running search."""
        if not self.joins(search):
            try:
                return [(key, self.translator.translate_nbest(lines, search=search))]
            except Exception as err:  # noqa: BLE001 - this request fails, the others go on
                return [(key, err)]
        request = _Request(key, list(lines), self.translator.source_ids(lines, search), search, arrived=self._steps)
        request.results = [None] * len(lines)
        for i, seq in enumerate(request.ids):
            if seq:
                self._waiting.append((request, i))
                request.missing += 1
            else:
                request.results[i] = [Translation(lines[i], "", [], ["</s>"], [], None, 0.0)]
        return [] if request.missing else [(key, request.results)]  # type: ignore[list-item]

    def cancel(self, key: Hashable) -> bool:
        """Request ``key`` is given up: its sentences leave, those waiting and those searching
        (their rows leave the running batch at once, so no step is spent on them), and it is
        never answered. False if no sentence of it was held (answered, or never submitted)."""
        held = False
        waiting: deque[tuple[_Request, int]] = deque()
        for request, i in self._waiting:
            if request.key == key:
                request.missing, held = -1, True
            else:
                waiting.append((request, i))
        self._waiting = waiting
        for search, running in list(self._running.items()):
            active = running.active.tolist() if len(running) else []
            rows = [r for r, ((request, _), on) in enumerate(zip(running.keys, active)) if on and request.key == key]
            if not rows:
                continue
            held = True
            for request, _ in (running.keys[r] for r in rows):
                request.missing = -1
            if len(rows) == len(running):
                del self._running[search]  # nothing else in it: a new one starts for the next request
            else:
                _drop_rows(running, rows)
        return held

    @torch.no_grad()
    def step(self) -> list[Answer]:
        """Waiting sentences join (as many as the budget lets), then one output token for
        every sentence searching."""
        answers: list[Answer] = []
        joining: dict[SearchConfig, list[tuple[_Request, int]]] = {}
        rows = self.searching
        # Joining copies the running batch and runs the encoder (an RNN's reads a sentence token
        # by token, however few join), so sentences join in groups: once they are ``join_share``
        # of the sentences searching, or the first has waited ``max_wait_steps`` steps.
        if self._waiting and (not rows or len(self._waiting) >= self.join_share * rows
                              or self._steps - self._waiting[0][0].arrived >= self.max_wait_steps):
            searching = sum(running.pieces for running in self._running.values())
            while self._waiting:
                request, i = self._waiting[0]
                pieces = len(request.ids[i])
                if searching and searching + pieces > self.max_tokens:
                    break
                self._waiting.popleft()
                searching += pieces
                joining.setdefault(request.search, []).append((request, i))
        for search, sentences in joining.items():
            running = self._running.get(search)
            if running is None:
                running = self._running[search] = RunningGreedy(self.translator.model, search,
                                                                self.translator.model.max_positions)
            batch = collate([request.ids[i] for request, i in sentences]).to(self.translator.device)
            answers += self._guarded(search, partial(running.add, batch.src, batch.src_mask, sentences), sentences)[1]
        self.last_step = self.searching
        self._steps += 1
        for search, running in list(self._running.items()):
            ended, failed = self._guarded(search, running.step)
            answers += failed
            for (request, i), hyp in ended:
                answers += self._ended(request, i, hyp)
            if not running:
                self._running.pop(search, None)
        return answers

    def _guarded(self, search: SearchConfig, work, joining: Sequence[tuple[_Request, int]] = ()
                 ) -> tuple[list, list[Answer]]:
        """``work()`` under the translator's precision: (its result, []). If it fails, the search
        is dropped and every request with a sentence in it (or joining it) fails with the error
        (([], their answers)); the others go on."""
        try:
            with self.translator.precision.autocast():
                return work() or [], []
        except Exception as err:  # noqa: BLE001 - told to each request it touched
            running = self._running.pop(search, None)
            failed = {id(r): r for r, _ in [*(running.keys if running else []), *joining] if r.missing >= 0}
            for request in failed.values():
                request.missing = -1  # answered
            self._waiting = deque(s for s in self._waiting if s[0].missing >= 0)
            return [], [(request.key, err) for request in failed.values()]

    def _ended(self, request: _Request, i: int, hyp: Hypothesis) -> list[Answer]:
        if request.missing < 0:
            return []
        request.results[i] = [self.translator.translation(request.lines[i], request.ids[i], hyp)]
        request.missing -= 1
        return [(request.key, request.results)] if request.missing == 0 else []  # type: ignore[list-item]


def _drop_rows(running: RunningGreedy, rows: Sequence[int]) -> None:
    """``rows`` of a running search (still searching, not all of them) stop and leave its batch
    now, as the rows that ended leave it (``RunningGreedy._keep``)."""
    running.active[list(rows)] = False
    running._alive -= len(rows)  # RunningGreedy's own bookkeeping, kept as its ``step`` keeps it
    running._keep(running.active.nonzero().squeeze(1))
