"""The ASGI app of ``mt serve``: LibreTranslate's API, mt's own fields, health, models,
Prometheus metrics and the live attention page.

Each model has a worker (``StreamingWorker``: continuous batching in its search processes, the
default; ``ModelWorker``: batches gathered in windows, or each request alone); handlers only
parse, check, queue and wait, so ``/health`` answers while a long batch runs. What a client can
observe follows LibreTranslate (its code and its clients were the reference): fields from JSON,
a form or the query string, unknown fields ignored, ``{"error": ...}`` for every error, 404 and
405 included. Every problem a client can cause is a 4xx; 503 (with ``Retry-After``) only says
"busy, try again", and 500 only a fault of mt's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from mt import __version__
from mt.decoding.attention_alignment import ARGMAX, AlignOptions, translation_pair
from mt.decoding.markup import AlignedSegment, HtmlDocument, parse_html
from mt.decoding.search import SearchConfig
from mt.decoding.sentences import join_text, split_text
from mt.decoding.translator import Translation, Translator
from mt.errors import MTError
from mt.serving.batcher import (
    BatchingOptions,
    ModelWorker,
    QueueFull,
    Search,
    SearchRejected,
    SearchUnavailable,
    StreamingWorker,
    request_search,
)
from mt.serving.detect import LanguageDetector
from mt.serving.downloads import Downloads
from mt.serving.protocol import (
    IGNORED_FIELDS,
    LANGUAGE_NAMES,
    MAX_ALTERNATIVES,
    MAX_BEAM,
    Limits,
    RequestError,
    TranslateRequest,
    check_text,
    parse_detect,
    parse_request,
    pharaoh,
    shown,
)
from mt.serving.requests import read_fields, within
from mt.visualization.explorer import with_colormap

log = logging.getLogger("mt.serve")
DEFAULT_LIMITS = Limits()
FILE_FORMATS = (".txt", ".html", ".htm")
MARKUP_HEADER = "X-MT-Markup"  # format html: "attention" (inline tags placed by alignment) or "text-nodes"


@dataclass
class ServedModel:
    name: str
    translator: Translator
    source: str           # language codes, from the model's config
    target: str
    info: dict[str, Any] = field(default_factory=dict)  # what GET /models shows
    search: list[Search] | None = None  # each runs a batch (SearchProcesses); None: the translator, in the worker thread
    worker: ModelWorker | StreamingWorker | None = None
    attends: bool = True  # has attention to place markup by (an RNN without attention has none)
    directory: str = ""   # shown by GET /models only with --show-paths


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


def _error(err: RequestError) -> JSONResponse:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else {}
    if err.status in (408, 413):
        headers["Connection"] = "close"  # the rest of a slow or too large body is not waited for
    return JSONResponse({"error": err.message}, status_code=err.status, headers=headers or None)


class Service:
    """The models and what every route needs of them: routing a language pair to a model,
    translating lines through its worker within the request's time, detecting languages."""

    def __init__(self, models: list[ServedModel], search: SearchConfig, limits: Limits, align: AlignOptions) -> None:
        self.models, self.search, self.limits, self.align = models, search, limits, align
        self.sources = sorted({m.source for m in models})
        self.languages = sorted({m.source for m in models} | {m.target for m in models})
        self._detectors: dict[tuple[str, ...], LanguageDetector] = {}
        self.downloads = Downloads()

    # -- languages -----------------------------------------------------------------------
    def detector(self, languages: Sequence[str]) -> LanguageDetector:
        key = tuple(sorted(languages))
        if key not in self._detectors:
            self._detectors[key] = LanguageDetector(key)
        return self._detectors[key]

    async def detect(self, texts: Sequence[str], languages: Sequence[str]) -> list[list[tuple[str, float]]]:
        """Each text's candidates among ``languages``, best first (LibreTranslate's 0-100 scale)."""
        detector = self.detector(languages)
        return await asyncio.to_thread(detector.detect_many, list(texts))

    def sources_for(self, target: str) -> list[str]:
        return sorted({m.source for m in self.models if m.target == target})

    def route(self, source: str, target: str, model: str | None) -> ServedModel:
        """The model for a pair: by name, else the first serving it (``source`` already detected)."""
        if model is not None:
            named = [m for m in self.models if m.name == model]
            if not named:
                raise RequestError(400, f"unknown model {shown(model)}: this server has "
                                        f"{', '.join(m.name for m in self.models)} (GET /models)")
            served = named[0]
            if (source, target) != (served.source, served.target):
                raise RequestError(400, f"model '{served.name}' translates {served.source} to {served.target}, not "
                                        f"{source} to {target}")
            return served
        for m in self.models:
            if (m.source, m.target) == (source, target):
                return m
        known = set(self.languages)
        if source not in known or target not in known:
            code = source if source not in known else target
            raise RequestError(400, f"{shown(code)} is not supported: this server has {', '.join(self.languages)} "
                                    "(GET /languages)")
        pairs = ", ".join(dict.fromkeys(f"{m.source}->{m.target}" for m in self.models))  # two models of a pair: once
        raise RequestError(400, f"no model translates {source} to {target}: this server has {pairs} (GET /languages)")

    async def sources_of(self, req: TranslateRequest, texts: Sequence[str]) -> tuple[list[str], list[dict] | None]:
        """Each text's source language, and with ``source: auto`` what was detected (per text)."""
        if req.source != "auto":
            return [req.source] * len(texts), None
        if req.model is not None:
            served = self.route(next((m.source for m in self.models if m.name == req.model), "?"), req.target,
                                req.model)
            candidates = [served.source]
        else:
            candidates = self.sources_for(req.target)
            if not candidates:
                raise RequestError(400, f"no model translates into {shown(req.target)}: this server translates into "
                                        f"{', '.join(sorted({m.target for m in self.models}))} (GET /languages)")
        found = await self.detect(texts, candidates)
        detected = [{"language": best[0][0], "confidence": best[0][1]} for best in found]
        return [d["language"] for d in detected], detected

    # -- translating ---------------------------------------------------------------------
    async def translate(self, served: ServedModel, lines: list[str], search: SearchConfig, deadline: float,
                        unit: str = "text", fresh_deadline: bool = False) -> list[list[Translation]]:
        """``lines`` through the model's worker, by ``deadline`` (perf_counter); a timed-out
        request is cancelled in the search process, not left to run on. More lines than a
        request may hold (``--max-texts``) go ``--max-texts`` at a time, so that one page or
        file never fills the queue others share; ``fresh_deadline``: each part gets the whole
        ``--timeout`` (files)."""
        if not lines:
            return []
        try:
            served.translator.check_search(search)
        except MTError as err:
            raise RequestError(400, f"model '{served.name}' cannot search so: {err}") from None
        limit = served.translator.input_limit(search)[0]
        ids = served.translator.src_tokenizer.encode(lines)
        for i, seq in enumerate(ids):
            if len(seq) > limit:
                raise RequestError(413, f"{unit} {i + 1} has {len(seq)} pieces, more than the {limit} the model reads "
                                        "(--max-input-len): split it")
        step = self.limits.max_sentences
        results: list[list[Translation]] = []
        for start in range(0, len(lines), step):
            if fresh_deadline:
                deadline = time.perf_counter() + self.limits.timeout
            results += await self._submit(served, lines[start:start + step], ids[start:start + step], search,
                                          deadline)
        return results

    async def _submit(self, served: ServedModel, lines: list[str], ids: list[list[int]], search: SearchConfig,
                      deadline: float) -> list[list[Translation]]:
        worker = served.worker
        assert worker is not None
        try:
            future = worker.submit(lines, sum(len(s) for s in ids), search)
        except QueueFull as err:
            raise RequestError(503, f"too busy: {err}; retry shortly", retry_after=1) from None
        try:
            return await within(asyncio.wrap_future(future), max(0.0, deadline - time.perf_counter()))
        except asyncio.TimeoutError:
            worker.cancel(future)
            raise RequestError(503, f"no answer within {self.limits.timeout:g} s (the request timeout): the server is "
                                    "busy; retry shortly", retry_after=5) from None
        except SearchUnavailable as err:
            log.warning("model %s: %s", served.name, err)  # the reason (paths and all) goes to the log only
            raise RequestError(503, f"model '{served.name}' is not available just now (its search process is "
                                    "starting again); retry shortly", retry_after=err.retry_after) from None
        except SearchRejected as err:
            raise RequestError(400, f"model '{served.name}' cannot translate this request: {err}") from None
        except RuntimeError as err:  # the search process died under this batch
            log.warning("model %s: %s", served.name, err)
            raise RequestError(503, f"the translation failed (model '{served.name}''s search process ended); retry",
                               retry_after=1) from None

    async def translate_texts(self, served: ServedModel, texts: list[str], search: SearchConfig, deadline: float,
                              alternatives: int, fresh_deadline: bool = False) -> list[tuple[str, list[str]]]:
        """Texts as LibreTranslate translates them: line by line and sentence by sentence, the
        line breaks kept; a text with no letter or digit (emoji, punctuation) comes back as it
        is. -> (translation, alternatives) per text; the k-th alternative of a text joins the
        k-th alternative of each of its sentences."""
        plans = [split_text(text) if _translatable(text) else None for text in texts]
        sentences = [s for plan in plans if plan is not None for line in plan for s in line]
        results = await self.translate(served, sentences, search, deadline, "sentence", fresh_deadline)
        out, k = [], 0
        for text, plan in zip(texts, plans):
            if plan is None:
                out.append((text, []))
                continue
            picked = []
            for line in plan:
                picked.append(results[k:k + len(line)])
                k += len(line)
            versions = [join_text([[hyps[min(j, len(hyps) - 1)].text for hyps in line] for line in picked], text)
                        for j in range(1 + alternatives)]
            out.append((versions[0], _unique(versions[1:], versions[0])))
        return out

    async def translate_markup(self, served: ServedModel, documents: list[HtmlDocument], search: SearchConfig,
                               deadline: float, fresh_deadline: bool = False) -> tuple[list[str], str]:
        """Parsed HTML fragments or pages translated with their markup kept: inline tags placed
        on the words the model's alignment links to the tagged source words (models with
        attention), else each text node translated apart. -> (the HTML, how the tags were placed).
        Rendering runs in a thread: the event loop never waits on a large page."""
        if served.attends:
            sentences = [s for doc in documents for s in doc.sentences]
            results = await self.translate(served, sentences, replace(search, keep_attention=True), deadline,
                                           "sentence", fresh_deadline)
            if all(r[0].attention is not None for r in results if r[0].tgt_ids):
                segments = [_segment(served.translator, r[0], self.align) for r in results]
                return await asyncio.to_thread(_each_page, documents, segments, "sentences"), "attention"
        nodes = [node for doc in documents for node in doc.text_nodes]
        translated = [text for text, _ in await self.translate_texts(served, nodes, search, deadline, 0,
                                                                      fresh_deadline)]
        return await asyncio.to_thread(_each_page, documents, translated, "text_nodes"), "text-nodes"


def _each_page(documents: list[HtmlDocument], translated: list, kind: str) -> list[str]:
    """Each page rendered with its share of ``translated`` (one per sentence, or per text node)."""
    out, start = [], 0
    for doc in documents:
        count = len(getattr(doc, kind))
        part = translated[start:start + count]
        out.append(doc.render(part) if kind == "sentences" else doc.render_nodes(part))
        start += count
    return out


def _translatable(text: str) -> bool:
    """Whether a model has anything to read: a letter or a digit (LibreTranslate returns emoji
    and punctuation as they are)."""
    return any(ch.isalnum() for ch in text)


def _segment(translator: Translator, translation: Translation, align: AlignOptions) -> AlignedSegment:
    if not translation.tgt_ids:
        return AlignedSegment(target_words=translation.text.split(), links=set())
    pair = translation_pair(translator, translation, align)
    return AlignedSegment(target_words=pair.tgt_words, links=set(pair.links))


def _answer(req: TranslateRequest, served: list[ServedModel], results: list[list[Translation]],
            align: AlignOptions, detected: list[dict] | None, texts: list[str] | None = None,
            alternatives: list[list[str]] | None = None) -> dict:
    """LibreTranslate's answer (``translatedText``, ``alternatives``, ``detectedLanguage``),
    then mt's fields. ``served``: the model of each text; ``texts``, ``alternatives``: the
    translations where they were put together from sentences or a page (not ``results``)."""
    extra = []
    for i, hyps in enumerate(results):
        best = hyps[0]
        item: dict[str, Any] = {}
        if req.scores:
            item["score"] = round(best.score, 4)
            item["normalized_score"] = round(best.normalized_score, 4)
            item["alternative_scores"] = [{"score": round(h.score, 4), "normalized_score": round(h.normalized_score, 4)}
                                          for h in hyps[1:]]
        if req.attention or req.alignment:
            pair = translation_pair(served[i].translator, best, align)
            if req.attention:
                item["attention"] = pair.as_dict()
            if req.alignment:
                item["alignment"] = pharaoh(pair.links)
        extra.append(item)
    one = not req.as_list
    translated = texts if texts is not None else [hyps[0].text for hyps in results]
    body: dict[str, Any] = {"translatedText": translated[0] if one else translated}
    if req.alternatives:
        if alternatives is None:
            alternatives = [[] for _ in translated] if texts is not None else \
                [_unique([h.text for h in hyps[1:]], hyps[0].text) for hyps in results]
        body["alternatives"] = alternatives[0] if one else alternatives
    if detected is not None:
        body["detectedLanguage"] = detected[0] if one else detected
    names = [m.name for m in served]
    body["model"] = names[0] if one or len(set(names)) == 1 else names
    for key in ("score", "normalized_score", "alternative_scores", "attention", "alignment"):
        if extra and key in extra[0]:
            body[key] = extra[0][key] if one else [item[key] for item in extra]
    return body


def _unique(texts: list[str], best: str) -> list[str]:
    """Alternatives as LibreTranslate gives them: none equal to the best or to another."""
    seen, out = {best, ""}, []
    for text in texts:
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def create_app(models: list[ServedModel], search: SearchConfig, batching: BatchingOptions,
               limits: Limits = DEFAULT_LIMITS, align: AlignOptions = ARGMAX, show_paths: bool = False) -> FastAPI:
    """The app over ``models`` (loaded); their workers start with the app and stop with it,
    after finishing what is queued. ``show_paths``: ``GET /models`` names their directories."""
    metrics = Metrics()
    started = time.time()
    service = Service(models, search, limits, align)

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
        if len(service.languages) > 1:  # loaded now, not by the first request that needs it
            await asyncio.to_thread(service.detector, service.languages)
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

    app = FastAPI(title="mt serve", version=__version__, lifespan=lifespan,
                  description="Translation with the attention of mt's models. POST /translate speaks "
                              "LibreTranslate's API, plus mt's own fields.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        messages = {404: "no such path: the API is POST /translate, POST /detect, GET /languages (GET /docs)",
                    405: "this path does not take that method (GET /docs lists the API)"}
        return JSONResponse({"error": messages.get(err.status_code, str(err.detail))}, status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"invalid request: {shown(err.errors(), 200)}"}, status_code=400)

    @app.exception_handler(Exception)
    async def fault(request: Request, err: Exception) -> JSONResponse:
        log.exception("an error of mt serve's own (please report it)", exc_info=err)
        # Answered outside _CountRequests (Starlette's outermost middleware): counted here.
        path = request.url.path if request.url.path in _PATHS else "other"
        metrics.requests.labels(path, "500").inc()
        return JSONResponse({"error": f"internal error ({type(err).__name__}): the server logged it"},
                            status_code=500)

    app.add_middleware(_CountRequests, metrics=metrics)
    # As LibreTranslate: any web page may call the API (browser extensions and web apps do).
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"],
                       allow_headers=["Authorization", "Content-Type"], expose_headers=[MARKUP_HEADER], max_age=86400)

    @app.post("/translate", openapi_extra=_TRANSLATE_DOC, summary="Translate (LibreTranslate-compatible)")
    async def translate(request: Request) -> Response:
        arrived = time.perf_counter()
        try:
            req = parse_request(await read_fields(request, limits), limits)
            body, headers = await _translate_request(service, req, arrived + limits.timeout)
            return JSONResponse(body, headers=headers)
        except RequestError as err:
            return _error(err)
        finally:
            metrics.latency.observe(time.perf_counter() - arrived)

    @app.post("/detect", summary="Detect the language (LibreTranslate's format)")
    async def detect(request: Request) -> Response:
        try:
            texts, as_list = parse_detect(await read_fields(request, limits), limits)
            found = await service.detect(texts, service.languages)
            if not as_list:
                return JSONResponse([{"confidence": c, "language": code} for code, c in found[0]])
            return JSONResponse(_mean_candidates(found, texts))
        except RequestError as err:
            return _error(err)

    @app.post("/translate_file", summary="Translate a .txt or .html file (LibreTranslate's format)")
    async def translate_file(request: Request) -> Response:
        try:
            fields = await read_fields(request, limits, files=True)
            upload = fields.get("file")
            if not isinstance(upload, tuple):
                raise RequestError(400, "'file' is missing: send the file as a multipart form field named file")
            filename, data = upload
            suffix = PurePath(filename).suffix.lower()
            if suffix not in FILE_FORMATS:
                raise RequestError(400, f"{shown(filename)}: the file format is not supported: send "
                                        f"{', '.join(FILE_FORMATS)}")
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as err:
                raise RequestError(400, f"{shown(filename)} is not UTF-8 (byte {err.start}): save it as UTF-8") \
                    from None
            if not text.strip():
                raise RequestError(400, f"{shown(filename)} is empty")
            check_text(text, "the file")
            probe = parse_request({"q": text[:limits.max_chars], "source": fields.get("source"),
                                   "target": fields.get("target")}, limits)
            html = suffix != ".txt"
            doc = (await parse_pages([text]))[0] if html else None
            sample = " ".join(doc.sentences or doc.text_nodes) if doc is not None else text
            sources, _ = await service.sources_of(probe, [sample[:2000]])
            served = service.route(sources[0], probe.target, None)
            plain = request_search(search, None, 0, False)
            deadline = time.perf_counter() + limits.timeout
            if doc is None:
                out = (await service.translate_texts(served, [text], plain, deadline, 0, fresh_deadline=True))[0][0]
                media = "text/plain; charset=utf-8"
            else:
                out = (await service.translate_markup(served, [doc], plain, deadline, fresh_deadline=True))[0][0]
                media = "text/html; charset=utf-8"
            key = service.downloads.put(safe_filename(filename), out.encode(), media,
                                        PurePath(filename.replace("\\", "/")).name)
            return JSONResponse({"translatedFileUrl": f"{str(request.base_url).rstrip('/')}/download_file/{quote(key)}"})
        except RequestError as err:
            return _error(err)

    @app.get("/download_file/{key}", summary="A translated file (POST /translate_file gives its URL)")
    async def download_file(key: str) -> Response:
        item = service.downloads.get(key)
        if item is None:
            return _error(RequestError(404, "no such file: translated files are kept for an hour, in memory; "
                                            "translate it again"))
        # RFC 6266: an ASCII name for every client, the uploaded one (any script) for those that read filename*.
        return Response(item.data, media_type=item.media_type, headers={
            "Content-Disposition": f"attachment; filename=\"{item.name}\"; filename*=UTF-8''{quote(item.original)}"})

    @app.get("/languages", summary="Languages (LibreTranslate's format)")
    async def languages() -> list[dict]:
        # Every language of the served models, target-only ones too, each with what it translates into.
        targets: dict[str, set[str]] = {code: set() for code in service.languages}
        for m in models:
            targets[m.source].add(m.target)
        return [{"code": code, "name": LANGUAGE_NAMES.get(code, code), "targets": sorted(targets[code])}
                for code in service.languages]

    @app.get("/frontend/settings", summary="Settings of the front end (LibreTranslate's format)")
    async def frontend_settings() -> dict:
        first = models[0]
        return {"charLimit": limits.max_chars, "frontendTimeout": 500, "apiKeys": False, "keyRequired": False,
                "suggestions": False, "filesTranslation": True, "supportedFilesFormat": list(FILE_FORMATS),
                "language": {"source": {"code": first.source, "name": LANGUAGE_NAMES.get(first.source, first.source)},
                             "target": {"code": first.target, "name": LANGUAGE_NAMES.get(first.target, first.target)}}}

    @app.get("/models", summary="The models served")
    async def list_models() -> list[dict]:
        return [{"name": m.name, "source": m.source, "target": m.target, **m.info,
                 **({"directory": m.directory} if show_paths else {})} for m in models]

    @app.api_route("/health", methods=["GET", "HEAD"], summary="Liveness")
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


async def _translate_request(service: Service, req: TranslateRequest, deadline: float) -> tuple[dict, dict]:
    """A ``POST /translate``, checked: its texts detected (``auto``), each sent to its model,
    answered in LibreTranslate's shape. -> (the body, headers)."""
    search = service.search
    documents = await parse_pages(req.texts) if req.format == "html" else None
    # Detection reads what will be translated: a page's text, not its markup.
    read = [" ".join(doc.sentences or doc.text_nodes) for doc in documents] if documents is not None else req.texts
    sources, detected = await service.sources_of(req, read)
    groups: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        groups.setdefault(source, []).append(i)
    routed = {source: service.route(source, req.target, req.model) for source in groups}
    served = [routed[s] for s in sources]
    settings = {"length_penalty": req.length_penalty, "penalty": req.penalty}
    if documents is not None:
        plain = request_search(search, req.beam, 0, False, **settings)
        parts = await _each_group(service.translate_markup(routed[s], [documents[i] for i in rows], plain, deadline)
                                  for s, rows in groups.items())
        texts = [""] * len(req.texts)
        for (out, _), rows in zip(parts, groups.values()):
            for i, text in zip(rows, out):
                texts[i] = text
        body = _answer(_plain(req), served, [[_as_is(t)] for t in texts], service.align, detected, texts)
        return body, {MARKUP_HEADER: ",".join(sorted({how for _, how in parts}))}
    job_search = request_search(search, req.beam, req.alternatives, req.attention or req.alignment, **settings)
    if req.attention or req.alignment or req.scores:
        # mt's fields describe one search of each text as the model read it: no cutting.
        lines = req.lines
        found = await _each_group(service.translate(routed[s], [lines[i] for i in rows], job_search, deadline)
                                  for s, rows in groups.items())
        results: list[list[Translation]] = [[] for _ in lines]
        for out, rows in zip(found, groups.values()):
            for i, hyps in zip(rows, out):
                results[i] = hyps
        return _answer(req, served, results, service.align, detected), {}
    cut = await _each_group(service.translate_texts(routed[s], [req.texts[i] for i in rows], job_search, deadline,
                                                    req.alternatives) for s, rows in groups.items())
    answers: list[tuple[str, list[str]]] = [("", [])] * len(req.texts)
    for out, rows in zip(cut, groups.values()):
        for i, answer in zip(rows, out):
            answers[i] = answer
    body = _answer(req, served, [[_as_is(t)] for t, _ in answers], service.align, detected,
                   [t for t, _ in answers], [alts for _, alts in answers])
    return body, {}


async def _each_group(jobs) -> list:
    """The groups of a request (its texts by model) translated side by side; one group (the
    usual request) awaited as it is, for a task per request costs the event loop measurably."""
    jobs = list(jobs)
    return [await jobs[0]] if len(jobs) == 1 else await asyncio.gather(*jobs)


async def parse_pages(texts: list[str]) -> list[HtmlDocument]:
    """HTML parsed in a thread (the event loop never waits on a large page); a page mt cannot
    place tags in (nested too deep, too many in one block) is a 400 naming why."""
    try:
        return await asyncio.to_thread(lambda: [parse_html(text) for text in texts])
    except MTError as err:
        raise RequestError(400, f"format html: {err}") from None


def _as_is(text: str) -> Translation:
    return Translation(text, text, [], [], [], None, 0.0)


def safe_filename(name: str) -> str:
    """An uploaded file's name as its download is called: the last part of the path, ASCII
    letters, digits, dot, dash and underscore (as LibreTranslate's ``secure_filename``)."""
    base = PurePath(name.replace("\\", "/")).name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "file"
    suffix = PurePath(base).suffix.lower()
    return safe if safe.lower().endswith(suffix) else safe + suffix


def _plain(req: TranslateRequest) -> TranslateRequest:
    """format html answers no scores or attention (they are of sentences, not of the page)."""
    return replace(req, scores=False, attention=False, alignment=False)


def _mean_candidates(found: list[list[tuple[str, float]]], texts: Sequence[str]) -> list[dict]:
    """A list's languages as LibreTranslate gives them: each language's mean confidence over
    the texts it was a candidate for, the most read first."""
    total: dict[str, list[float]] = {}
    weight: dict[str, int] = {}
    for candidates, text in zip(found, texts):
        for code, confidence in candidates:
            total.setdefault(code, []).append(confidence)
            weight[code] = weight.get(code, 0) + len(text)
    ranked = sorted(total, key=lambda c: (-weight[c], -sum(total[c]) / len(total[c])))
    return [{"confidence": round(sum(total[c]) / len(total[c]), 1), "language": c} for c in ranked]


_PATHS = {"/translate", "/detect", "/translate_file", "/languages", "/frontend/settings", "/models", "/health",
          "/metrics", "/", "/openapi.json", "/docs"}

PAGE = with_colormap(resources.files("mt.serving").joinpath("page.html").read_text(encoding="utf-8"))

_TRANSLATE_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {
        "type": "object", "required": ["q", "source", "target"],
        "properties": {
            "q": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                  "description": "a text, or a list of texts (answered with a list)"},
            "source": {"type": "string", "description": "language code, or 'auto' (detected, per text)"},
            "target": {"type": "string"},
            "format": {"type": "string", "enum": ["text", "html"],
                       "description": "html: the markup is kept, inline tags placed by the model's alignment"},
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
