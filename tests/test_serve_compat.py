"""mt serve as LibreTranslate: clients other people publish, pointed at a real ``mt serve`` and
used unchanged (Python: libretranslatepy, deep-translator; JavaScript: the npm packages
``libretranslate`` and ``translate``); what a LibreTranslate client can observe (query-string
fields, every language listed, unknown fields ignored, ``{"error"}`` for 404 and 405, /detect,
detection per text, /frontend/settings, /translate_file, format html); and clients that are slow
or hostile, which must neither hold the server nor get a 500 out of it.

The server serves two models into German: ``ende`` (the tiny attention model of conftest) and
``frde``, the same model with its source labelled French, so that ``auto`` must detect, per
text, which of two models a text goes to.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import socket
import subprocess
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the serve extra is not installed (pip install -e '.[serve,dev]')")
pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve,dev]')")

from mt.decoding.search import SearchConfig
from mt.decoding.translator import Translator
from mt.export import open_translator

from .serving import Server

pytestmark = pytest.mark.clients  # CI's second tier: npm from its registry, servers and slow clients

EN = ["The dog sleeps.", "A man calls the woman.", "The old man has seen the small dog."]
FR = "Le vieil homme a vu le petit chien dans la maison."
DE = "Der alte Mann hat den kleinen Hund im Haus gesehen."
NPM_CLIENTS = {"libretranslate": "1.0.1", "translate": "3.1.0"}


@pytest.fixture(scope="module")
def fr_model_dir(tmp_path_factory, trained_model_dir) -> Path:
    """The tiny model again, its source language relabelled 'fr' (it reads English): a second
    model into German, so that ``auto`` must pick one per text. Its manifest goes, as it must
    for a folder edited on purpose; no second training (this module runs on both test workers)."""
    model = tmp_path_factory.mktemp("frde") / "model"
    shutil.copytree(trained_model_dir, model)
    config = model / "config.yaml"
    config.write_text(config.read_text().replace("src_lang: en", "src_lang: fr", 1))
    (model / "manifest.json").unlink()
    return model


@pytest.fixture(scope="module")
def lt(trained_model_dir, fr_model_dir):
    s = Server(f"ende={trained_model_dir}", f"frde={fr_model_dir}", "--max-input-len", "80", "--read-timeout", "1.5",
               "--max-connections", "40", "--char-limit", "3000", "--show-paths")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def ende(trained_model_dir) -> Translator:
    return open_translator(str(trained_model_dir), "cpu", "fp32")


def test_libretranslatepy_translates_detects_and_lists_languages_unchanged(lt, ende):
    from libretranslatepy import LibreTranslateAPI

    api = LibreTranslateAPI(lt.url)
    languages = {item["code"]: item["targets"] for item in api.languages()}
    assert languages == {"de": [], "en": ["de"], "fr": ["de"]}
    assert api.translate(EN[0], "en", "de") == ende.translate([EN[0]])[0].text  # a form body
    assert api.translate(EN[1], "auto", "de") == ende.translate([EN[1]])[0].text
    assert api.detect(DE)[0]["language"] == "de" and 0 < api.detect(DE)[0]["confidence"] <= 100
    assert api.detect(FR)[0]["language"] == "fr"
    with pytest.raises(Exception) as err:  # urllib's HTTPError, its body LibreTranslate's {"error": ...}
        api.translate(EN[0], "en", "xx")
    assert err.value.code == 400 and "'xx' is not supported" in json.loads(err.value.read())["error"]


def test_deep_translator_sends_its_fields_in_the_query_string_and_is_served(lt, ende):
    from deep_translator import LibreTranslator

    client = LibreTranslator(source="en", target="de", api_key="any", custom_url=f"{lt.url}/")
    assert client.translate(EN[2]) == ende.translate([EN[2]])[0].text
    assert client.translate_batch(EN[:2]) == [t.text for t in ende.translate(EN[:2])]


def test_the_npm_clients_translate_through_mt_serve_unchanged(lt, ende, tmp_path):
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("Node.js and npm are not installed")
    specs = [f"{name}@{version}" for name, version in NPM_CLIENTS.items()]
    install = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", *specs], check=False,
                             cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert install.returncode == 0, install.stderr[-2000:]
    script = tmp_path / "clients.mjs"
    script.write_text(f"""
import lib from "libretranslate";
import {{ Translate }} from "translate";
const url = {json.dumps(lt.url)};
const out = {{}};
out.libretranslate = await lib.translate({{query: {json.dumps(EN[0])}, source: "en", target: "de", apiurl: url}});
out.libretranslateAuto = await lib.translate({{query: {json.dumps(EN[1])}, target: "de", apiurl: url}});
const translate = Translate({{engine: "libre", url: url + "/translate"}});
out.translate = await translate({json.dumps(EN[2])}, {{from: "en", to: "de"}});
console.log(JSON.stringify(out));
""")
    run = subprocess.run(["node", str(script)], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    want = [t.text for t in ende.translate(EN)]
    assert [out["libretranslate"], out["libretranslateAuto"], out["translate"]] == want


def test_fields_come_from_the_query_string_form_or_json_and_unknown_ones_are_ignored(lt, ende):
    want = ende.translate([EN[0]])[0].text
    query = httpx.post(f"{lt.url}/translate", params={"q": EN[0], "source": "en", "target": "de"})
    assert query.status_code == 200 and query.json()["translatedText"] == want
    later = httpx.post(f"{lt.url}/translate", json={"q": EN[0], "source": "en", "target": "de", "apiKey": "k",
                                                    "format": "text", "colour": [1, 2], "alternatives": 0})
    assert later.status_code == 200 and later.json()["translatedText"] == want
    # mt's own fields keep their checks.
    assert httpx.post(f"{lt.url}/translate", json={"q": EN[0], "source": "en", "target": "de",
                                                   "beam": "²"}).status_code == 400


def test_auto_detects_each_text_of_a_list_and_routes_it_to_its_model(lt, ende):
    answer = httpx.post(f"{lt.url}/translate", json={"q": [EN[0], FR], "source": "auto", "target": "de"}).json()
    assert [d["language"] for d in answer["detectedLanguage"]] == ["en", "fr"]
    assert all(0 < d["confidence"] <= 100 for d in answer["detectedLanguage"])
    assert answer["model"] == ["ende", "frde"]
    assert answer["translatedText"][0] == ende.translate([EN[0]])[0].text
    one = httpx.post(f"{lt.url}/translate", json={"q": FR, "source": "auto", "target": "de"}).json()
    assert one["detectedLanguage"]["language"] == "fr" and one["model"] == "frde"


def test_detect_frontend_settings_and_errors_in_libretranslates_shape(lt):
    listed = httpx.post(f"{lt.url}/detect", json={"q": [DE, DE]}).json()
    assert listed[0]["language"] == "de"
    assert httpx.post(f"{lt.url}/detect", data={"q": FR}).json()[0]["language"] == "fr"
    missing = httpx.post(f"{lt.url}/detect", json={})
    assert missing.status_code == 400 and "'q'" in missing.json()["error"]
    assert httpx.get(f"{lt.url}/detect").status_code == 405 and "error" in httpx.get(f"{lt.url}/detect").json()
    nowhere = httpx.get(f"{lt.url}/no/such/path")
    assert nowhere.status_code == 404 and "no such path" in nowhere.json()["error"]
    settings = httpx.get(f"{lt.url}/frontend/settings").json()
    assert settings["charLimit"] == 3000 and settings["language"]["source"]["code"] == "en"
    assert settings["supportedFilesFormat"] == [".txt", ".html", ".htm"] and settings["keyRequired"] is False
    cors = httpx.options(f"{lt.url}/translate", headers={"Origin": "https://example.org",
                                                        "Access-Control-Request-Method": "POST"})
    assert cors.headers["access-control-allow-origin"] == "*"
    models = httpx.get(f"{lt.url}/models").json()
    assert all(Path(m["directory"]).is_absolute() for m in models)  # --show-paths


def test_format_html_keeps_every_tag_placed_by_attention(lt):
    page = '<p class="x">The old man has seen <b>the small dog</b>.</p><pre>keep  <i>this</i></pre>'
    placed = httpx.post(f"{lt.url}/translate", json={"q": page, "source": "en", "target": "de", "format": "html"})
    assert placed.status_code == 200 and placed.headers["x-mt-markup"] == "attention"
    html = placed.json()["translatedText"]
    for tag in ('<p class="x">', "</p>", "<b>", "</b>"):
        assert html.count(tag) == 1, html
    assert "<pre>keep  <i>this</i></pre>" in html


def test_translate_file_answers_a_url_to_download_the_translation(lt, ende):
    text = f"{EN[0]}\n\n{EN[1]}\n"
    answer = httpx.post(f"{lt.url}/translate_file", data={"source": "en", "target": "de"},
                        files={"file": ("notes.txt", text.encode(), "text/plain")})
    assert answer.status_code == 200, answer.text
    url = answer.json()["translatedFileUrl"]
    assert url.startswith(lt.url + "/download_file/")
    got = httpx.get(url)
    want = [t.text for t in ende.translate(EN[:2])]
    assert got.text == f"{want[0]}\n\n{want[1]}\n" and 'filename="notes.txt"' in got.headers["content-disposition"]
    page = httpx.post(f"{lt.url}/translate_file", data={"source": "en", "target": "de"},
                      files={"file": ("page.html", b"<h1>The dog <i>sleeps</i>.</h1>", "text/html")})
    assert httpx.get(page.json()["translatedFileUrl"]).text.count("<i>") == 1
    bad = httpx.post(f"{lt.url}/translate_file", data={"source": "en", "target": "de"},
                     files={"file": ("a.pdf", b"%PDF", "application/pdf")})
    assert bad.status_code == 400 and "not supported" in bad.json()["error"]
    assert httpx.get(f"{lt.url}/download_file/nothing.txt").status_code == 404


def _raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_slow_clients_get_408_and_their_connections_are_closed(lt):
    request = b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    headers = _raw(lt.port)
    start = time.perf_counter()
    try:
        for byte in request[:30]:  # a byte every 0.2 s: past the 1.5 s deadline, closed
            headers.sendall(bytes([byte]))
            time.sleep(0.2)
    except OSError:
        pass
    answer = _read_all(headers)
    assert answer.startswith(b"HTTP/1.1 408") and b"headers did not arrive within 1.5 s" in answer
    assert time.perf_counter() - start < 6
    body = json.dumps({"q": EN[0], "source": "en", "target": "de"}).encode()
    slow = _raw(lt.port)
    slow.sendall(request + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:5])
    answer = _read_all(slow)  # the rest never comes
    assert answer.startswith(b"HTTP/1.1 408") and b"the body did not arrive within 1.5 s" in answer
    assert httpx.get(f"{lt.url}/health").status_code == 200


def test_connections_past_the_cap_are_answered_503_at_once(lt):
    held = [_raw(lt.port) for _ in range(40)]
    try:
        time.sleep(0.2)
        extra = _raw(lt.port)
        answer = _read_all(extra)
        assert answer.startswith(b"HTTP/1.1 503") and b"--max-connections" in answer and b"retry-after: 1" in answer
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(f"{lt.url}/health").status_code == 200


def _junk(rng: random.Random, depth: int = 0):
    kinds = ["str", "int", "float", "bool", "none", "list", "dict", "digits", "huge"]
    kind = rng.choice(kinds if depth < 3 else kinds[:5])
    if kind == "str":
        return "".join(rng.choice(["a", "é", "\u0000", "\ud7ff", "²", "٣", " ", "<b>", "&amp;", "\U0001F600", "\n"])
                       for _ in range(rng.randint(0, 12)))
    if kind == "int":
        return rng.choice([0, 1, -1, 2**31, -2**63, 10**30])
    if kind == "float":
        return rng.choice([0.5, -1e308, 1e-320, 3.0, float("inf"), float("nan")])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "digits":
        return rng.choice(["²", "٣", "1_0", " 4 ", "0x10", "1e3", "+2", "-0", "4.0", "๓"])
    if kind == "huge":
        return "9" * rng.choice([20, 5000])
    if kind == "list":
        return [_junk(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["q", "source", "target", "beam", "x"]): _junk(rng, depth + 1) for _ in range(rng.randint(0, 3))}


FIELDS = ["q", "source", "target", "format", "alternatives", "model", "beam", "length_penalty", "penalty",
          "attention", "alignment", "scores", "api_key"]


def test_fuzzed_requests_get_no_500_and_the_server_lives_on(lt):
    rng = random.Random(48)
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=60) as client:
        for _ in range(300):
            body = {"q": EN[0], "source": "en", "target": "de"}
            for name in rng.sample(FIELDS, rng.randint(1, 4)):
                body[name] = _junk(rng)
            how = rng.random()
            if how < 0.7:
                raw = json.dumps(body, allow_nan=True).encode()
                answer = client.post(f"{lt.url}/translate", content=raw, headers={"Content-Type": "application/json"})
            elif how < 0.85:
                form = {k: str(v) for k, v in body.items()}
                answer = client.post(f"{lt.url}/translate", data=form)
            else:
                answer = client.post(f"{lt.url}/detect", content=json.dumps(body).encode(),
                                     headers={"Content-Type": rng.choice(["application/json", "text/plain", ""])})
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            assert answer.status_code < 500, (body, answer.text)
            assert "error" in answer.json() if answer.status_code >= 400 else True
    assert statuses.get(200, 0) > 20 and statuses.get(400, 0) > 50, statuses
    assert httpx.get(f"{lt.url}/health").json()["status"] == "ok"


def test_the_request_parser_never_raises_anything_but_a_request_error():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mt.serving.protocol import Limits, RequestError, parse_request

    values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                      max_size=3), max_leaves=8)

    @settings(max_examples=400, deadline=None, database=None)
    @given(st.dictionaries(st.sampled_from(FIELDS + ["other"]), values, max_size=6))
    def check(body):
        try:
            req = parse_request(body, Limits())
        except RequestError as err:
            assert 400 <= err.status < 500 and err.message
            return
        assert req.texts and all(isinstance(t, str) for t in req.texts) and req.format in ("text", "html")

    check()


def test_search_settings_reach_the_search_the_same_from_every_body(lt, ende):
    beam = ende.translate_nbest([EN[2]], nbest=2, search=SearchConfig(beam=3))[0]
    for send in ({"json": {"q": EN[2], "source": "en", "target": "de", "beam": 3, "alternatives": 1}},
                 {"params": {"q": EN[2], "source": "en", "target": "de", "beam": "3", "alternatives": "1"}}):
        answer = httpx.post(f"{lt.url}/translate", **send).json()
        assert answer["translatedText"] == beam[0].text
        assert answer["alternatives"] == [h.text for h in beam[1:] if h.text != beam[0].text]


def test_a_text_is_translated_line_by_line_and_sentence_by_sentence_its_line_breaks_kept(lt, ende):
    text = f"{EN[0]} {EN[1]}\n\n{EN[2]}\n"
    want = [t.text for t in ende.translate(EN)]
    answer = httpx.post(f"{lt.url}/translate", json={"q": text, "source": "en", "target": "de"}).json()
    assert answer["translatedText"] == f"{want[0]} {want[1]}\n\n{want[2]}\n"
    # Longer than the model reads at once (80 pieces), but each sentence is not: translated, not 413.
    long = " ".join([EN[0]] * 60)
    many = httpx.post(f"{lt.url}/translate", json={"q": long, "source": "en", "target": "de"})
    assert many.status_code == 200 and many.json()["translatedText"] == " ".join([want[0]] * 60)
    assert httpx.post(f"{lt.url}/translate", json={"q": "🙂 !", "source": "en", "target": "de"}).json()[
        "translatedText"] == "🙂 !"  # nothing to read: as it is, as LibreTranslate answers


def test_a_model_without_attention_translates_each_text_node_apart(ende):
    from mt.serving.app import ServedModel, Service, parse_pages
    from mt.serving.protocol import Limits

    class Alone:  # the worker: each line translated as mt translate would
        def submit(self, lines, pieces, search):
            future: Future = Future()
            future.set_result(ende.translate_nbest(lines, search=search))
            return future

    served = ServedModel("plain", ende, "en", "de", worker=Alone(), attends=False)  # type: ignore[arg-type]
    service = Service([served], SearchConfig(), Limits(), None)  # type: ignore[arg-type]
    page = '<p class="x">The old man has seen <b>the small dog</b>.</p>'

    async def run():
        return await service.translate_markup(served, await parse_pages([page]), SearchConfig(),
                                              time.perf_counter() + 60)

    (html,), how = asyncio.run(run())
    want = [t.text for t in ende.translate(["The old man has seen", "the small dog"])]
    assert how == "text-nodes" and html == f'<p class="x">{want[0]} <b>{want[1]}</b>.</p>'  # "." as it is


def test_a_long_text_goes_to_the_worker_a_request_sized_part_at_a_time(ende):
    from mt.serving.app import ServedModel, Service
    from mt.serving.protocol import Limits

    class Recording:
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def submit(self, lines, pieces, search):
            self.sizes.append(len(lines))
            future: Future = Future()
            future.set_result(ende.translate_nbest(lines, search=search))
            return future

    served = ServedModel("ende", ende, "en", "de", worker=Recording())  # type: ignore[arg-type]
    service = Service([served], SearchConfig(), Limits(max_sentences=8), None)  # type: ignore[arg-type]
    out = asyncio.run(service.translate_texts(served, [" ".join(EN * 7)], SearchConfig(), time.perf_counter() + 60,
                                              0))
    assert served.worker.sizes == [8, 8, 5]  # 21 sentences, at most --max-texts in the queue at once
    assert out[0][0] == " ".join(t.text for t in ende.translate(EN * 7))


def test_what_the_review_found_around_the_edges(lt):
    # A body nobody reads (GET /health with a Content-Length) cannot hold the connection.
    sock = _raw(lt.port)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < 8:
            sock.sendall(b"c")
            time.sleep(0.3)
    except OSError:
        pass
    assert time.perf_counter() - start < 6  # closed about a second past the 1.5 s deadline
    # Any file name: a safe download name and a URL that works.
    for name in ("日本.txt", "a#b?.txt", "my file.txt"):
        answer = httpx.post(f"{lt.url}/translate_file", data={"source": "en", "target": "de"},
                            files={"file": (name, EN[0].encode(), "text/plain")})
        got = httpx.get(answer.json()["translatedFileUrl"])
        assert got.status_code == 200 and got.text and got.headers["content-disposition"].isascii()
    # A byte order mark before JSON, HEAD /health, and the markup header readable by web pages.
    bom = httpx.post(f"{lt.url}/translate", content=b"\xef\xbb\xbf" + json.dumps(
        {"q": EN[0], "source": "en", "target": "de"}).encode(), headers={"Content-Type": "application/json"})
    assert bom.status_code == 200
    assert httpx.head(f"{lt.url}/health").status_code == 200
    page = httpx.post(f"{lt.url}/translate", json={"q": "<b>The dog</b> sleeps.", "source": "en", "target": "de",
                                                   "format": "html"}, headers={"Origin": "https://example.org"})
    assert "x-mt-markup" in page.headers["access-control-expose-headers"].lower()
    # Detection reads a page's text, not its markup.
    html = '<div class="the main content"><a title="the home page">' + FR + "</a></div>"
    auto = httpx.post(f"{lt.url}/translate", json={"q": html, "source": "auto", "target": "de", "format": "html"})
    assert auto.json()["detectedLanguage"]["language"] == "fr"
    # HTML mt cannot place tags in is a 400 naming why (was a 500: RecursionError).
    deep = httpx.post(f"{lt.url}/translate", json={"q": "<p>" + "<b>" * 300 + "dog" + "</b>" * 300 + "</p>",
                                                   "source": "en", "target": "de", "format": "html"})
    assert deep.status_code == 400 and "nests more than 100" in deep.json()["error"]
    # A request h11 cannot parse gets LibreTranslate's JSON error too.
    bad = _raw(lt.port)
    bad.sendall(b"GARBAGE\r\n\r\n")
    answer = _read_all(bad)
    assert answer.startswith(b"HTTP/1.1 400") and b'"error"' in answer


def test_what_the_second_review_found(lt, ende):
    # A request's headers stalled behind a pipelined one still meet the deadline (not the 5 s keep-alive).
    body = json.dumps({"q": EN[0], "source": "en", "target": "de"}).encode()
    sock = _raw(lt.port)
    start = time.perf_counter()
    sock.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body + b"POST /translate HTTP/1.1\r\nHos")
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in answer and time.perf_counter() - start < 4
    # Line ends as sent, a trailing blank line too; a whole paragraph inside an inline element is cut.
    want = [t.text for t in ende.translate(EN[:2])]
    text = httpx.post(f"{lt.url}/translate", json={"q": f"{EN[0]}\r\n{EN[1]}\n\n", "source": "en", "target": "de"})
    assert text.json()["translatedText"] == f"{want[0]}\r\n{want[1]}\n\n"
    page = httpx.post(f"{lt.url}/translate", json={"q": f"<p><span>{EN[0]} {EN[1]}</span></p>", "source": "en",
                                                   "target": "de", "format": "html"}).json()["translatedText"]
    assert page.startswith("<p><span>") and want[0] in page  # the first sentence translated as it is alone
    # The uploaded name, any script, for clients that read filename*.
    answer = httpx.post(f"{lt.url}/translate_file", data={"source": "en", "target": "de"},
                        files={"file": ("日本.txt", EN[0].encode(), "text/plain")})
    disposition = httpx.get(answer.json()["translatedFileUrl"]).headers["content-disposition"]
    assert "filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt" in disposition
