"""``mt serve``: a translation server (``mt.serving.server.serve``). The flags become a
``ServeSettings``, which refuses a value out of range as SearchConfig does, and takes its
defaults from it."""

from __future__ import annotations

import argparse

from mt.cli.flags import add_model_flags, add_search_flags, new_parser, search_config
from mt.errors import MTError


def parser() -> argparse.ArgumentParser:
    from mt.serving.batcher import BATCHING_MODES
    from mt.serving.protocol import ServeSettings

    default = ServeSettings()
    batching, limits = default.batching, default.limits
    serve = new_parser("serve", "a translation server: LibreTranslate's API (POST /translate, /detect, "
                       "/translate_file, GET /languages), GET /models, /health, /metrics, and at / a page that shows "
                       "the attention of every model as you type")
    serve.add_argument("models", nargs="+", metavar="MODEL_DIR", help="model directories or their runs' folders, each DIR or NAME=DIR "
                       "(a 'model' folder is named after its run); each language pair goes to its first model")
    serve.add_argument("--host", default=default.host, help=f"address to listen on (default {default.host}: this "
                       "machine only; 0.0.0.0 lets every machine that reaches this one translate, unauthenticated)")
    serve.add_argument("--port", type=int, default=default.port, help="port to listen on")
    serve.add_argument("--show-paths", action="store_true",
                       help="GET /models names each model's directory (off: clients do not learn the paths)")
    requests = serve.add_argument_group("requests")
    requests.add_argument("--char-limit", type=int, default=limits.max_chars, help="characters per request")
    requests.add_argument("--max-texts", type=int, default=limits.max_sentences, help="texts in one request's q list")
    requests.add_argument("--max-body", type=int, default=limits.max_body, help="bytes of request body")
    requests.add_argument("--timeout", type=float, default=limits.timeout, help="seconds a request may take")
    requests.add_argument("--read-timeout", type=float, default=limits.read_timeout, metavar="S",
                          help="seconds a client has to send a request's headers, and again its body (past it: 408 "
                          "and the connection closed)")
    requests.add_argument("--max-connections", type=int, default=default.max_connections, metavar="N",
                          help="connections open at once; more are answered 503 with Retry-After")
    batches = serve.add_argument_group("batching and search processes")
    batches.add_argument("--batching", choices=BATCHING_MODES, default=batching.mode,
                         help="continuous: a greedy request's sentences (--beam 1) join the running search at its "
                         "next step and leave it the step they end, a beam request runs whole between two steps; "
                         "window: requests gathered into batches (--max-wait-ms, "
                         "--min-wait-ms); off: each request alone, for comparison")
    batches.add_argument("--no-batching", action="store_true", help="the same as --batching off")
    batches.add_argument("--max-batch-tokens", type=int, default=batching.max_tokens, metavar="N",
                         help="source pieces searching at once, or per batch of concurrent requests")
    batches.add_argument("--max-wait-ms", type=float, default=batching.max_wait * 1000, metavar="MS",
                         help="--batching window: how long a batch waits at most for the requests of a steady load "
                         "to come back (a lone request does not wait)")
    batches.add_argument("--min-wait-ms", type=float, default=batching.min_wait * 1000, metavar="MS",
                         help="--batching window: how long every batch waits for company (more: throughput before "
                         "latency)")
    batches.add_argument("--max-queue", type=int, default=batching.max_queue, metavar="N",
                         help="sentences per model waiting or being translated before requests get 503")
    batches.add_argument("--search-processes", type=int, default=default.processes, metavar="N",
                         help="processes per model that run batches side by side (2 with --threads 1 gave 1.25x the "
                         "sentences/s of one for a Transformer on 2 cores under load, docs/lab/benchmarks.md)")
    batches.add_argument("--threads", type=int, default=default.threads,
                         help="torch threads of each search process; 0: the cores shared among them, less one for "
                         "the HTTP side with --batching continuous")
    add_search_flags(serve)
    add_model_flags(serve)
    return serve


def run(args: list[str]) -> int:
    ns = parser().parse_args(args)
    from mt.serving.batcher import BatchingOptions
    from mt.serving.protocol import Limits, ServeSettings

    settings = ServeSettings(
        host=ns.host, port=ns.port, device=ns.device, precision=ns.precision,
        search=search_config(ns, keep_attention=False),
        batching=BatchingOptions(max_tokens=ns.max_batch_tokens, max_wait=ns.max_wait_ms / 1000,
                                 max_queue=ns.max_queue, mode="off" if ns.no_batching else ns.batching,
                                 min_wait=ns.min_wait_ms / 1000),
        limits=Limits(ns.char_limit, ns.max_texts, ns.max_body, ns.timeout, ns.read_timeout),
        processes=ns.search_processes, threads=ns.threads, max_connections=ns.max_connections,
        show_paths=ns.show_paths)
    try:
        from mt.serving.server import serve
    except ImportError as err:
        raise MTError(f"mt serve needs the serve extra ({err.name} is missing): pip install 'mt[serve]' "
                      "(scripts/setup.sh installs it)") from None
    return serve(ns.models, settings)
