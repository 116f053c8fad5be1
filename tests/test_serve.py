"""mt serve: a real server in a subprocess on a free loopback port, spoken to over HTTP (httpx),
and its page in headless Chromium. Skipped with a reason where the serve extra is missing."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the serve extra is not installed (pip install -e '.[serve,dev]')")
pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve,dev]')")

from mt.decoding.search import SearchConfig
from mt.decoding.translator import Translator
from mt.export import open_translator

from .serving import REPO, Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server(trained_model_dir):
    s = Server(f"rnn={trained_model_dir}", f"second={trained_model_dir}", "--max-wait-ms", "30",
               "--max-input-len", "60", "--char-limit", "2000", "--max-texts", "60", "--max-body", "20000")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def translator(trained_model_dir) -> Translator:
    return open_translator(str(trained_model_dir), "cpu", "fp32")


SENTENCES = ["The dog sleeps.", "A man calls the woman.", "The old man has seen the small dog.",
             "A red car waits in the house.", "The woman sees a small red car today."]


def test_libretranslate_requests_and_answers(server, translator):
    alone = translator.translate(SENTENCES[:2], SearchConfig())
    one = httpx.post(f"{server.url}/translate", json={"q": SENTENCES[0], "source": "en", "target": "de",
                                                      "format": "text", "api_key": "ignored"})
    assert one.status_code == 200 and one.json()["translatedText"] == alone[0].text
    listed = httpx.post(f"{server.url}/translate", json={"q": SENTENCES[:2], "source": "en", "target": "de"}).json()
    assert listed["translatedText"] == [t.text for t in alone]
    form = httpx.post(f"{server.url}/translate", data={"q": SENTENCES[0], "source": "en", "target": "de"})
    assert form.json()["translatedText"] == alone[0].text
    multipart = httpx.post(f"{server.url}/translate", files={"q": (None, SENTENCES[0]), "source": (None, "en"),
                                                             "target": (None, "de")})
    assert multipart.json()["translatedText"] == alone[0].text
    beam = translator.translate_nbest([SENTENCES[2]], nbest=3, search=SearchConfig(beam=3))[0]
    alts = httpx.post(f"{server.url}/translate", json={"q": SENTENCES[2], "source": "en", "target": "de",
                                                       "alternatives": 2, "beam": 3, "scores": True}).json()
    assert alts["translatedText"] == beam[0].text and alts["alternatives"] == [h.text for h in beam[1:]]
    assert alts["score"] == pytest.approx(beam[0].score, abs=1e-3) and len(alts["alternative_scores"]) == 2
    auto = httpx.post(f"{server.url}/translate", json={"q": SENTENCES[0], "source": "auto", "target": "de"}).json()
    assert auto["detectedLanguage"]["language"] == "en" and auto["translatedText"] == alone[0].text
    # Every language served, target-only ones too (clients check the target is listed).
    assert httpx.get(f"{server.url}/languages").json() == [{"code": "de", "name": "German", "targets": []},
                                                         {"code": "en", "name": "English", "targets": ["de"]}]
    models = httpx.get(f"{server.url}/models").json()
    assert [m["name"] for m in models] == ["rnn", "second"] and models[0]["parameters"] > 1000
    assert str(REPO) not in str(models) and "/tmp" not in str(models)  # no path unless --show-paths
    assert models[0]["source"] == "en" and models[0]["precision"] == "fp32" and models[0]["batching"] == "continuous"
    assert "/translate" in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_attention_and_alignment_as_mt_align_writes_them(server, translator):
    body = httpx.post(f"{server.url}/translate", json={"q": [SENTENCES[1]], "source": "en", "target": "de",
                                                       "model": "second", "attention": True, "alignment": True}).json()
    assert body["model"] == "second"
    att = body["attention"][0]
    mine = translator.translate([SENTENCES[1]])[0]
    assert att["src_tokens"] == mine.src_pieces and att["tgt_tokens"] == mine.tgt_pieces[: len(mine.tgt_ids)]
    assert len(att["attention"]) == len(mine.tgt_pieces) and len(att["word_attention"]) == len(att["tgt_words"])
    links = body["alignment"][0].split()
    assert links and all(len(link.split("-")) == 2 for link in links)
    assert sorted(tuple(int(x) for x in link.split("-")) for link in links) == sorted(map(tuple, att["links"]))


async def _many(url: str, lines: list[str]) -> list:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(client.post(f"{url}/translate", json={"q": line, "source": "en",
                                                                            "target": "de"}) for line in lines))


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_fifty_concurrent_requests_get_what_mt_translate_gives_each_line_alone(server, translator, corpus_dir):
    lines = [line for line in (corpus_dir / "train.en").read_text().splitlines()
             if len(translator.src_tokenizer.encode([line])[0]) <= 60][:50]
    text = httpx.get(f"{server.url}/metrics").text
    before = _metric(text, "mt_batch_sentences_count"), _metric(text, "mt_batch_sentences_sum")
    answers = asyncio.run(_many(server.url, lines))
    assert len(lines) == 50 and [a.status_code for a in answers] == [200] * 50
    alone = [translator.translate([line])[0].text for line in lines]
    assert [a.json()["translatedText"] for a in answers] == alone
    metrics = httpx.get(f"{server.url}/metrics").text
    answered = _metric(metrics, "mt_batch_sentences_count") - before[0]  # one per request (continuous batching)
    shared = _metric(metrics, "mt_batch_sentences_sum") - before[1]      # the sentences searched beside each
    assert answered == 50 and shared > 2 * answered  # requests searched together, not one by one
    assert _metric(metrics, 'mt_requests_total{path="/translate",status="200"}') >= 50


BAD = [
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b'{"q": 3, "source": "en", "target": "de"}', "application/json", 400, "'q' must be a string or a list"),
    (b'{"q": ["a", 4], "source": "en", "target": "de"}', "application/json", 400, "'q' must be a string"),
    (b'{"q": "", "source": "en", "target": "de"}', "application/json", 400, "'q' is missing"),
    (b'{"q": ["", " "], "source": "en", "target": "de"}', "application/json", 400, "'q' is empty"),
    (b'{"source": "en", "target": "de"}', "application/json", 400, "'q' is missing"),
    (b'{"q": "Hi", "source": "en"}', "application/json", 400, "'target' is missing"),
    (b'{"q": "Hi", "source": "en", "target": "fr"}', "application/json", 400, "'fr' is not supported"),
    (b'{"q": "Hi", "source": "auto", "target": "fr"}', "application/json", 400, "no model translates into 'fr'"),
    (b'{"q": "Hi", "source": "en", "target": "de", "model": "nope"}', "application/json", 400, "unknown model 'nope'"),
    (b'{"q": "Hi", "source": "en", "target": "de", "beam": 0}', "application/json", 400, "'beam' must be"),
    (b'{"q": "Hi", "source": "en", "target": "de", "alternatives": "x"}', "application/json", 400, "'alternatives'"),
    (b'{"q": "Hi", "source": "en", "target": "de", "attention": "maybe"}', "application/json", 400, "'attention'"),
    (b'{"q": "Hi", "source": "en", "target": "de", "beam": "\xc2\xb2"}', "application/json", 400, "'beam' must be"),
    (b'{"q": "Hi", "source": "en", "target": "de", "beam": 1e999}', "application/json", 400, "'beam' must be"),
    (b'{"q": "Hi", "source": "en", "target": "de", "beam": ' + b"9" * 5000 + b'}', "application/json", 400,
     "Python cannot read"),
    (b'{"q": "Hi", "source": "en", "target": "de", "length_penalty": NaN}', "application/json", 400,
     "'length_penalty' must be"),
    (b'{"q": "\\ud800", "source": "en", "target": "de"}', "application/json", 400, "unpaired surrogate"),
    (b'{"q": "Hi", "source": "en", "target": "de", "format": "pdf"}', "application/json", 400, "'format' must be"),
    (b'{"q": "Hi", "source": "en", "target": "xx"}', "application/json", 400, "'xx' is not supported"),
    (b'{"q": ' + b"[" * 9000 + b"]" * 9000 + b'}', "application/json", 400, "nested too deep"),
    (b'[1, 2]', "application/json", 400, "must be a JSON object"),
    (b'', "application/json", 400, "'q' is missing"),
    (b'{"q": "Gr\xfc\xdfe", "source": "en", "target": "de"}', "application/json", 400, "not valid UTF-8"),  # Latin-1
    (b'q=%FF&source=en&target=de', "application/x-www-form-urlencoded", 400, "not valid UTF-8"),
    (('{"q": "' + "word " * 500 + '", "source": "en", "target": "de"}').encode(), "application/json", 413,
     "characters, more than the 2000"),
    (('{"q": [' + ",".join(['"a"'] * 61) + '], "source": "en", "target": "de"}').encode(), "application/json", 413,
     "61 texts, more than the 60"),
    (('{"q": "' + "the old man sees a small red car " * 20 + '", "source": "en", "target": "de"}').encode(),
     "application/json", 413, "more than the 60 the model reads"),
    (b'{"q": "' + b"x" * 30000 + b'"}', "application/json", 413, "more than the 20000"),
    (b'{"q": "' + b"x" * 19000 + b'"}', "application/json", 413, "more than the 2000"),
]


@pytest.mark.parametrize("body, kind, status, needle", BAD, ids=[b[3] for b in BAD])
def test_every_bad_request_gets_a_4xx_naming_the_problem_and_the_next_is_served(server, body, kind, status, needle):
    answer = httpx.post(f"{server.url}/translate", content=body, headers={"Content-Type": kind})
    assert answer.status_code == status, answer.text
    assert needle in answer.json()["error"]
    good = httpx.post(f"{server.url}/translate", json={"q": "The dog sleeps.", "source": "en", "target": "de"})
    assert good.status_code == 200 and good.json()["translatedText"]


def test_metrics_count_what_was_sent(server):
    before = _metric(httpx.get(f"{server.url}/metrics").text, 'mt_requests_total{path="/translate",status="400"}')
    for _ in range(3):
        httpx.post(f"{server.url}/translate", content=b"{", headers={"Content-Type": "application/json"})
    text = httpx.get(f"{server.url}/metrics").text
    assert _metric(text, 'mt_requests_total{path="/translate",status="400"}') == before + 3
    assert "mt_request_seconds_bucket" in text and "mt_queue_sentences" in text
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


def test_a_full_queue_answers_503_and_sigterm_loses_no_request_in_flight(trained_model_dir, corpus_dir, translator):
    s = Server(str(trained_model_dir), "--batching", "window", "--max-queue", "6", "--min-wait-ms", "1500")
    lines = (corpus_dir / "test.en").read_text().splitlines()[:10]

    async def flood() -> list:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(f"{s.url}/translate", json={"q": line, "source": "en",
                                                                                  "target": "de"}) for line in lines))

    answers = asyncio.run(flood())
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 6 and codes.count(503) == 4
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.headers["retry-after"] == "1" and "too busy" in refused.json()["error"]

    async def stop_in_flight() -> list:
        async with httpx.AsyncClient(timeout=60) as client:
            sent = [asyncio.create_task(client.post(f"{s.url}/translate", json={"q": line, "source": "en",
                                                                                "target": "de"})) for line in lines[:5]]
            await asyncio.sleep(0.5)  # all five wait in the queue (1.5 s for others to batch with)
            s.proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*sent)

    answers = asyncio.run(stop_in_flight())
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["translatedText"] for a in answers] == [translator.translate([x])[0].text for x in lines[:5]]
    assert s.proc.wait(30) == 0, s.output()
    assert s.stop() == 0


def test_a_bad_command_line_is_one_line(trained_model_dir, tmp_path, capsys):
    from mt.cli.main import main

    assert main(["serve", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", f"a={trained_model_dir}", f"a={trained_model_dir}"]) == 2
    assert "two models are named 'a'" in capsys.readouterr().err
    for flags, needle in ((["--port", "99999"], "--port must be at most 65535"),
                          (["--threads", "-1"], "--threads must be at least 0"),
                          (["--host", "no.such.host.invalid"], "--host no.such.host.invalid: ")):
        assert main(["serve", str(trained_model_dir), *flags]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    with socket.socket() as taken:  # a port another server holds: said in a second, before any model loads
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        start = time.perf_counter()
        assert main(["serve", str(trained_model_dir), "--port", str(taken.getsockname()[1])]) == 2
        assert f"port {taken.getsockname()[1]} on 127.0.0.1 is in use" in capsys.readouterr().err
        assert time.perf_counter() - start < 5


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: apt-get install chromium (see the README)")
def test_the_page_translates_and_draws_the_attention_in_a_real_browser(server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    from .test_explorer import FLAGS

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1366, "height": 800})
        errors, requests = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(server.url)
        page.wait_for_selector("#models input")
        assert page.locator("#models input").count() == 2  # both en-de models, side by side
        page.fill("#text", "The old man sees a small red car.")
        page.press("#text", "Enter")
        page.wait_for_selector(".card .map .cell")
        assert page.locator(".card").count() == 2
        assert page.locator(".card .translation").first.inner_text().strip()
        first = page.locator(".card").first
        assert first.locator(".tok.hover").count() == 0 and first.locator(".cell.hl").count() == 0
        targets = first.locator(".tok.tgt")
        targets.nth(0).hover()
        lit_first = [first.locator(".cell").nth(i).get_attribute("class") for i in range(first.locator(".cell").count())]
        assert first.locator(".cell.hl").count() > 0
        targets.nth(1).hover()
        lit_second = [first.locator(".cell").nth(i).get_attribute("class") for i in range(first.locator(".cell").count())]
        assert lit_first != lit_second  # hovering another target piece lights other cells
        page.click("#unit-words")
        page.wait_for_selector(".card .map .cell")
        page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
        browser.close()
    assert errors == []
    assert requests and all(url.startswith(server.url) for url in requests)  # nothing leaves the loopback


def test_a_request_past_its_timeout_is_a_503_and_the_server_lives_on(trained_model_dir):
    s = Server(str(trained_model_dir), "--batching", "window", "--timeout", "0.3", "--min-wait-ms", "2000")
    try:
        late = httpx.post(f"{s.url}/translate", json={"q": "The dog sleeps.", "source": "en", "target": "de"})
        assert late.status_code == 503 and late.headers["retry-after"] == "5"
        assert "no answer within 0.3 s" in late.json()["error"]
        assert httpx.get(f"{s.url}/health").json()["status"] == "ok"
    finally:
        assert s.stop() == 0


def test_a_killed_search_process_fails_its_batch_with_a_503_and_a_new_one_serves_the_next(server):
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    searchers = [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(searchers) == 2  # one per model
    os.kill(int(searchers[0]), signal.SIGKILL)
    time.sleep(0.5)
    body = {"q": "The dog sleeps.", "source": "en", "target": "de", "model": "rnn"}
    first = httpx.post(f"{server.url}/translate", json=body, timeout=60)
    assert first.status_code in (200, 503)
    if first.status_code == 503:
        assert "search process ended" in first.json()["error"] or "starting again" in first.json()["error"]
        assert first.headers["retry-after"] in ("1", "2")
    deadline = time.time() + 60
    while (again := httpx.post(f"{server.url}/translate", json=body, timeout=60)).status_code == 503:
        assert "retry-after" in again.headers and time.time() < deadline  # while the new one loads
        time.sleep(0.2)
    assert again.status_code == 200 and again.json()["translatedText"]


@pytest.mark.faults
def test_a_search_process_that_cannot_start_again_fails_requests_at_once_and_retries(trained_model_dir, tmp_path):
    from mt.serving.batcher import SearchProcess, SearchUnavailable

    model = tmp_path / "model"
    shutil.copytree(trained_model_dir, model)
    search = SearchProcess(str(model), threads=1)
    search.RETRY_S = 0.5
    config = SearchConfig()
    try:
        assert search(["The dog sleeps."], config)[0][0].text
        shutil.move(model, tmp_path / "moved")  # the next child cannot load it
        os.kill(search._process.pid, signal.SIGKILL)
        deadline = time.time() + 30
        while True:  # each request fails at once (starting again, or why it cannot start), none waits for a load
            start = time.perf_counter()
            with pytest.raises(RuntimeError) as failed:  # the first may have reached the dying child
                search.submit(["The dog sleeps."], config).result(timeout=30)
            assert time.perf_counter() - start < 0.5
            assert isinstance(failed.value, SearchUnavailable) or "search process ended" in str(failed.value)
            if "could not load the model" in str(failed.value):
                assert "tried again every 0.5 s" in str(failed.value)
                break
            assert time.time() < deadline
            time.sleep(0.2)
        shutil.move(tmp_path / "moved", model)
        deadline = time.time() + 60
        while True:  # started again once a request comes after RETRY_S
            try:
                assert search.submit(["The dog sleeps."], config).result(timeout=60)[0][0].text
                break
            except SearchUnavailable:
                assert time.time() < deadline
                time.sleep(0.2)
    finally:
        search.close()


def test_two_search_processes_run_batches_side_by_side_and_give_what_one_gives(trained_model_dir, translator,
                                                                              corpus_dir):
    s = Server(str(trained_model_dir), "--search-processes", "2", "--max-input-len", "60")
    try:
        children = Path(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children").read_text().split()
        assert sum(b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children) == 2
        lines = [line for line in (corpus_dir / "train.en").read_text().splitlines()
                 if len(translator.src_tokenizer.encode([line])[0]) <= 60][50:100]
        answers = asyncio.run(_many(s.url, lines))
        assert [a.status_code for a in answers] == [200] * 50
        assert [a.json()["translatedText"] for a in answers] == [translator.translate([x])[0].text for x in lines]
    finally:
        assert s.stop() == 0


def test_a_model_worker_with_two_searches_overlaps_their_batches_and_loses_no_job():
    from mt.serving.batcher import BatchingOptions, ModelWorker

    spans: dict[str, list[tuple[float, float, list[str]]]] = {"a": [], "b": []}

    def search(name: str):
        def run(lines: list[str], _config: SearchConfig) -> list:
            start = time.perf_counter()
            time.sleep(0.15)
            spans[name].append((start, time.perf_counter(), lines))
            return [[f"{name}:{line}"] for line in lines]
        return run

    worker = ModelWorker(None, BatchingOptions(max_wait=0.005), search=[search("a"), search("b")])  # type: ignore[arg-type]
    try:
        first = [worker.submit([f"x{i}"], 1, SearchConfig()) for i in range(4)]
        time.sleep(0.05)  # the first batch runs on one search; the next wave goes to the other
        second = [worker.submit([f"y{i}"], 1, SearchConfig()) for i in range(4)]
        results = [f.result(5)[0][0] for f in first + second]
    finally:
        worker.stop()
    assert [r.split(":")[1] for r in results] == [f"x{i}" for i in range(4)] + [f"y{i}" for i in range(4)]
    assert spans["a"] and spans["b"]
    (a_start, a_end, _), (b_start, b_end, _) = spans["a"][0], spans["b"][0]
    assert a_start < b_end and b_start < a_end  # the two batches ran at the same time
    assert sorted(line for runs in spans.values() for _, _, lines in runs for line in lines) == \
        sorted(r.split(":")[1] for r in results)


class _HeldSearch:
    """A search process stand-in whose answers wait until the test releases them."""

    def __init__(self) -> None:
        self.sent: list[tuple[list[str], Future]] = []

    def submit(self, lines: list[str], _search: SearchConfig, stream: bool = True) -> Future:
        future: Future = Future()
        self.sent.append((lines, future))
        return future

    def release(self) -> None:
        for lines, future in self.sent:
            if not future.done():
                future.batch_sentences = len(self.sent)  # type: ignore[attr-defined]
                future.set_result([[f"t:{line}"] for line in lines])

    def close(self) -> None:
        pass


def test_continuous_batching_bounds_what_it_holds_spreads_requests_and_stops_after_the_last_answer():
    from mt.serving.batcher import BatchingOptions, QueueFull, StreamingWorker

    searches = [_HeldSearch(), _HeldSearch()]
    batches = []
    worker = StreamingWorker(searches, BatchingOptions(max_queue=5), on_batch=lambda b, n: batches.append((b, n)))
    futures = [worker.submit(["a", "b"], 4, SearchConfig()), worker.submit(["c"], 2, SearchConfig()),
               worker.submit(["d", "e"], 4, SearchConfig())]
    assert [len(s.sent) for s in searches] == [1, 2]  # each request to the search holding fewest sentences
    assert worker.queued_sentences == 5 and worker.busy_since is not None
    with pytest.raises(QueueFull, match="5 sentences are being translated"):
        worker.submit(["f"], 2, SearchConfig())
    stopper = threading.Thread(target=worker.stop, args=(10,))
    stopper.start()
    time.sleep(0.2)
    assert stopper.is_alive()  # stop waits for the requests it holds
    with pytest.raises(QueueFull, match="shutting down"):
        worker.submit(["g"], 2, SearchConfig())
    for search in searches:
        search.release()
    stopper.join(5)
    assert not stopper.is_alive()
    assert [f.result(1) for f in futures] == [[["t:a"], ["t:b"]], [["t:c"]], [["t:d"], ["t:e"]]]
    assert worker.queued_sentences == 0 and worker.busy_since is None
    assert sorted(n for _, n in batches) == [1, 2, 2]


def test_a_continuous_search_leaves_one_core_to_the_http_side_by_default(trained_model_dir):
    from mt.serving.server import load_models

    def threads(**settings) -> int:
        (served,) = load_models([("m", str(trained_model_dir))], "cpu", "fp32", search_process=False, cores=4,
                                **settings)
        return served.info["threads"]

    assert threads(continuous=True) == 3 and threads(continuous=False) == 4
    assert threads(continuous=True, processes=2) == 1 and threads(continuous=False, processes=2) == 2
    assert threads(continuous=True, threads=4) == 4  # --threads decides when given


def test_the_refusal_of_an_unserved_pair_names_each_served_pair_once():
    from mt.serving.app import RequestError, ServedModel, Service
    from mt.serving.protocol import Limits

    served = [ServedModel(name, None, "en", "de", worker=None) for name in ("small", "big")]  # type: ignore[arg-type]
    served.append(ServedModel("fr", None, "fr", "en", worker=None))  # type: ignore[arg-type]
    service = Service(served, SearchConfig(), Limits(), None)  # type: ignore[arg-type]
    with pytest.raises(RequestError) as refused:
        service.route("de", "fr", None)
    assert refused.value.status == 400
    assert "this server has en->de, fr->en (GET /languages)" in refused.value.message
