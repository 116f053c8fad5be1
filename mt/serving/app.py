"""The ASGI app of ``mt serve``: LibreTranslate's API, mt's own fields, health, models,
Prometheus metrics and the live attention page.

Each model has a worker (``StreamingWorker``: continuous batching in its search processes, the
default; ``ModelWorker``: batches gathered in windows, or each request alone); handlers only
parse, check, queue and wait, so ``/health`` answers while a long batch runs. Every problem a client
can cause is a 4xx with ``{"error": "..."}`` (LibreTranslate's shape), never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from mt import __version__
from mt.decoding.aligner import ARGMAX, AlignOptions, translation_pair
from mt.decoding.search import SearchConfig
from mt.decoding.translator import Translator
from mt.serving.batcher import BatchingOptions, ModelWorker, QueueFull, Search, StreamingWorker, request_search
from mt.serving.protocol import (
    IGNORED_FIELDS,
    LANGUAGE_NAMES,
    MAX_ALTERNATIVES,
    MAX_BEAM,
    Limits,
    RequestError,
    TranslateRequest,
    parse_request,
    pharaoh,
)
from mt.visualization.explorer import with_colormap

log = logging.getLogger("mt.serve")
DEFAULT_LIMITS = Limits()


@dataclass
class ServedModel:
    name: str
    translator: Translator
    source: str           # language codes, from the model's config
    target: str
    info: dict[str, Any] = field(default_factory=dict)  # what GET /models shows
    search: list[Search] | None = None  # each runs a batch (SearchProcesses); None: the translator, in the worker thread
    worker: ModelWorker | StreamingWorker | None = None


class Metrics:
    """What ``GET /metrics`` shows, in a registry of this app's own (tests start several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mt_requests", "HTTP requests answered, by path and status", ["path", "status"],
                                registry=self.registry)
        self.latency = Histogram("mt_request_seconds", "Time from a translate request's arrival to its answer",
                                 registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.sentences = Counter("mt_sentences", "Sentences translated, by model", ["model"], registry=self.registry)
        self.batch = Histogram("mt_batch_sentences", "Sentences searched together: per batch (--batching window), "
                               "or in the step a request ended (continuous), by model", ["model"],
                               registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.queue = Gauge("mt_queue_sentences", "Sentences waiting, by model", ["model"], registry=self.registry)


class _CountRequests:
    """Counts every answer by path and status: plain ASGI, for the overhead of
    ``@app.middleware("http")`` is a good part of a short request's time."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in _PATHS else "other"

        async def counted(message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(path, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)


def _route(models: list[ServedModel], req: TranslateRequest) -> ServedModel:
    """The model a request goes to: by name, else the first serving its language pair."""
    if req.model is not None:
        named = [m for m in models if m.name == req.model]
        if not named:
            raise RequestError(400, f"unknown model '{req.model}': this server has {', '.join(m.name for m in models)}"
                                    " (GET /models)")
        served = named[0]
        if req.source not in ("auto", served.source) or req.target != served.target:
            raise RequestError(400, f"model '{served.name}' translates {served.source} to {served.target}, not "
                                    f"{req.source} to {req.target}")
        return served
    if req.source == "auto":
        by_target = [m for m in models if m.target == req.target]
        if len({m.source for m in by_target}) == 1:
            return by_target[0]
        raise RequestError(400, "source 'auto' needs one source language for the target, but "
                                + (f"{req.target} is served from {', '.join(sorted({m.source for m in by_target}))}"
                                   if by_target else f"no model translates into '{req.target}'")
                                + ": give the source language (GET /languages)")
    for m in models:
        if (m.source, m.target) == (req.source, req.target):
            return m
    pairs = ", ".join(f"{m.source}->{m.target}" for m in models)
    raise RequestError(400, f"no model translates {req.source} to {req.target}: this server has {pairs} "
                            "(GET /languages)")


async def _read_body(request: Request, limit: int) -> Any:
    """The JSON or form body, read up to ``limit`` bytes (413 past it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the body is {int(declared)} bytes, more than the {limit} a request may send")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is more than the {limit} bytes a request may send")
        chunks.append(chunk)
    raw = b"".join(chunks)
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, f"the body is not valid UTF-8 (byte {err.start}): send UTF-8 text") from None
    if kind == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(text, keep_blank_values=True, strict_parsing=False, errors="strict")
        except UnicodeDecodeError:
            raise RequestError(400, "the form is not valid UTF-8: send UTF-8 text") from None
        return {k: (v if k == "q" and len(v) > 1 else v[0]) for k, v in form.items()}
    if kind == "multipart/form-data":
        replay = Request(request.scope, receive=_replay(raw))
        try:
            form = await replay.form()
        except Exception as err:  # noqa: BLE001 - a malformed multipart body is the client's
            raise RequestError(400, f"the multipart form could not be read: {err}") from None
        return {k: (form.getlist(k) if k == "q" and len(form.getlist(k)) > 1 else form[k]) for k in form}
    if not text.strip():
        raise RequestError(400, "the body is empty: send JSON such as {\"q\": \"Hello\", \"source\": \"en\", "
                                "\"target\": \"de\"}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RequestError(400, f"the body is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") \
            from None


def _replay(raw: bytes):
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return receive


def _error(err: RequestError) -> JSONResponse:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
    return JSONResponse({"error": err.message}, status_code=err.status, headers=headers)


def _answer(req: TranslateRequest, served: ServedModel, results, options: AlignOptions) -> dict:
    texts, alternatives, extra = [], [], []
    for hyps in results:
        best = hyps[0]
        texts.append(best.text)
        alternatives.append([h.text for h in hyps[1:]])
        item: dict[str, Any] = {}
        if req.scores:
            item["score"] = round(best.score, 4)
            item["normalized_score"] = round(best.normalized_score, 4)
            item["alternative_scores"] = [{"score": round(h.score, 4), "normalized_score": round(h.normalized_score, 4)}
                                          for h in hyps[1:]]
        if req.attention or req.alignment:
            pair = translation_pair(served.translator, best, options)
            if req.attention:
                item["attention"] = pair.as_dict()
            if req.alignment:
                item["alignment"] = pharaoh(pair.links)
        extra.append(item)
    one = not req.as_list
    body: dict[str, Any] = {"translatedText": texts[0] if one else texts}
    if req.alternatives:
        body["alternatives"] = alternatives[0] if one else alternatives
    if req.source == "auto":
        body["detectedLanguage"] = {"language": served.source, "confidence": 100.0}
    body["model"] = served.name
    for key in ("score", "normalized_score", "alternative_scores", "attention", "alignment"):
        if extra and key in extra[0]:
            body[key] = extra[0][key] if one else [item[key] for item in extra]
    return body


def create_app(models: list[ServedModel], search: SearchConfig, batching: BatchingOptions,
               limits: Limits = DEFAULT_LIMITS, align: AlignOptions = ARGMAX) -> FastAPI:
    """The app over ``models`` (loaded); their workers start with the app and stop with it,
    after finishing what is queued."""
    metrics = Metrics()
    started = time.time()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        for served in models:
            # Continuous batching needs mt's own search; an export's engine (CTranslate2) batches
            # whole requests, so it gets window batching.
            if batching.mode == "continuous" and served.search and served.translator.streams:
                served.worker = StreamingWorker(served.search, batching, on_batch=_batch_counter(served.name))
                served.info["batching"] = "continuous"
            else:
                served.worker = ModelWorker(served.translator, batching, on_batch=_batch_counter(served.name),
                                            search=served.search)
                served.info["batching"] = "window" if batching.enabled else "off"
        log.info("serving %s", ", ".join(f"{m.name} ({m.source}->{m.target})" for m in models))
        yield
        for served in models:
            if served.worker is not None:
                served.worker.stop()

    def _batch_counter(name: str):
        def count(batch: int, sentences: int) -> None:
            metrics.batch.labels(name).observe(batch)
            metrics.sentences.labels(name).inc(sentences)
        return count

    app = FastAPI(title="mt serve", version=_version(), lifespan=lifespan,
                  description="Translation with the attention of mt's models. POST /translate speaks "
                              "LibreTranslate's API, plus mt's own fields.")

    app.add_middleware(_CountRequests, metrics=metrics)

    @app.post("/translate", openapi_extra=_TRANSLATE_DOC, summary="Translate (LibreTranslate-compatible)")
    async def translate(request: Request) -> Response:
        arrived = time.perf_counter()
        try:
            req = parse_request(await _read_body(request, limits.max_body), limits)
            served = _route(models, req)
            job_search = request_search(search, req.beam, req.alternatives, req.attention or req.alignment,
                                        length_penalty=req.length_penalty, penalty=req.penalty)
            limit = served.translator.input_limit(job_search)[0]
            ids = served.translator.src_tokenizer.encode(req.lines)
            for i, seq in enumerate(ids):
                if len(seq) > limit:
                    raise RequestError(413, f"text {i + 1} has {len(seq)} pieces, more than the {limit} the model "
                                            "reads (--max-input-len): split it into sentences")
            assert served.worker is not None
            try:
                future = served.worker.submit(req.lines, sum(len(s) for s in ids), job_search)
            except QueueFull as err:
                raise RequestError(503, f"too busy: {err}; retry shortly", retry_after=1) from None
            metrics.queue.labels(served.name).set(served.worker.queued_sentences)
            try:
                results = await asyncio.wait_for(asyncio.wrap_future(future), limits.timeout)
            except asyncio.TimeoutError:
                future.cancel()
                raise RequestError(503, f"no answer within {limits.timeout:g} s (the request timeout): the server is "
                                        "busy; retry shortly", retry_after=5) from None
            except RuntimeError as err:  # the search process died under this batch, or cannot start again
                raise RequestError(503, f"the translation failed ({err}); retry", retry_after=1) from None
            return JSONResponse(_answer(req, served, results, align))
        except RequestError as err:
            return _error(err)
        finally:
            metrics.latency.observe(time.perf_counter() - arrived)

    @app.get("/languages", summary="Languages (LibreTranslate's format)")
    async def languages() -> list[dict]:
        sources: dict[str, set[str]] = {}
        for m in models:
            sources.setdefault(m.source, set()).add(m.target)
        return [{"code": code, "name": LANGUAGE_NAMES.get(code, code), "targets": sorted(targets)}
                for code, targets in sorted(sources.items())]

    @app.get("/models", summary="The models served")
    async def list_models() -> list[dict]:
        return [{"name": m.name, "source": m.source, "target": m.target, **m.info} for m in models]

    @app.get("/health", summary="Liveness")
    async def health() -> dict:
        busy = {m.name: round(time.perf_counter() - m.worker.busy_since, 3)
                for m in models if m.worker is not None and m.worker.busy_since is not None}
        return {"status": "ok", "models": len(models), "uptime_s": round(time.time() - started, 1),
                "busy_s": busy}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        for m in models:
            if m.worker is not None:
                metrics.queue.labels(m.name).set(m.worker.queued_sentences)
        return PlainTextResponse(generate_latest(metrics.registry).decode(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    return app


_PATHS = {"/translate", "/languages", "/models", "/health", "/metrics", "/", "/openapi.json", "/docs"}

PAGE = with_colormap(resources.files("mt.serving").joinpath("page.html").read_text(encoding="utf-8"))

_TRANSLATE_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {
        "type": "object", "required": ["q", "source", "target"],
        "properties": {
            "q": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                  "description": "a text, or a list of texts (answered with a list)"},
            "source": {"type": "string", "description": "language code, or 'auto' where one model serves the target"},
            "target": {"type": "string"},
            "alternatives": {"type": "integer", "minimum": 0, "maximum": MAX_ALTERNATIVES,
                             "description": "this many more translations (n-best) in 'alternatives'"},
            "model": {"type": "string", "description": "mt: the model, by name (GET /models)"},
            "beam": {"type": "integer", "minimum": 1, "maximum": MAX_BEAM, "description": "mt: beam size"},
            "length_penalty": {"type": "number", "minimum": 0, "maximum": 5, "description": "mt: alpha"},
            "penalty": {"type": "string", "enum": ["plain", "gnmt"]},
            "attention": {"type": "boolean", "description": "mt: pieces, words and attention, as mt align --json"},
            "alignment": {"type": "boolean", "description": "mt: Pharaoh word links, as mt align --pharaoh"},
            "scores": {"type": "boolean", "description": "mt: log-probability and normalised score"},
            **{name: {"type": "string", "description": "accepted and ignored"} for name in IGNORED_FIELDS},
        }}},
    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
    "multipart/form-data": {"schema": {"type": "object"}},
}}}


def _version() -> str:
    return __version__
