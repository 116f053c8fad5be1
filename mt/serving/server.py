"""``mt serve``: models loaded by name, the app run by uvicorn, a clean exit on SIGTERM.

SIGTERM (or Ctrl-C) stops accepting connections, lets the requests in flight finish (each
model's worker empties its queue) and exits 0, so a process manager sees a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

import torch
import uvicorn

from mt.config import ExperimentConfig, load_yaml
from mt.errors import MTError
from mt.export import open_translator
from mt.model_dir import CONFIG, export_format, readable_dir
from mt.serving.app import ServedModel, create_app
from mt.serving.batcher import SearchProcess
from mt.serving.connections import bounded_protocol
from mt.serving.protocol import ServeSettings

log = logging.getLogger("mt.serve")


def model_specs(args: Sequence[str]) -> list[tuple[str, str]]:
    """``DIR`` or ``NAME=DIR`` -> (name, dir). A directory called ``model`` (what a training run
    writes) is named after its run folder; names must differ."""
    specs = []
    for arg in args:
        name, _, folder = arg.rpartition("=") if "=" in arg else ("", "", arg)
        path = Path(folder)
        if not name:
            name = path.resolve().parent.name if path.name in {"model", "best", "last"} else path.name
        specs.append((name, folder))
    names = [n for n, _ in specs]
    for n in names:
        if names.count(n) > 1:
            raise MTError(f"two models are named '{n}': name them, e.g. mt serve {n}_a=DIR1 {n}_b=DIR2")
    return specs


def load_models(specs: Sequence[tuple[str, str]], device: str = "auto", precision: str = "auto",
                threads: int = 0, search_process: bool = True, processes: int = 1, max_tokens: int = 4096,
                continuous: bool = False, cores: int | None = None):
    """Each model directory loaded (a bad one is one line naming it), with what GET /models shows;
    ``search_process``: its searches run in processes of their own (``processes`` of them per
    model, each with ``threads`` torch threads; 0: its share of the ``cores``, less one for the
    HTTP side where the search is ``continuous``; ``max_tokens`` source pieces searching at
    once in each)."""
    cores = cores or torch.get_num_threads()
    served = []
    for name, given in specs:
        folder = str(readable_dir(given))  # a run folder: its model/
        translator = open_translator(folder, device, precision)  # a model directory or an export (mt export)
        # A continuous search never idles between batches, so by default it leaves one core to the
        # HTTP side: on 2 cores, 1 thread served more than 2 (docs/lab/benchmarks.md, 2026-12-01). An
        # export's engine cannot stream: window batching (mt.serving.app), all of them.
        spare = continuous and translator.streams and cores > 1
        share = threads or max(1, (cores - spare) // processes)
        config = load_yaml(Path(folder) / CONFIG, ExperimentConfig)
        model = config.model
        attends = model.arch.value == "transformer" or model.attention.type.value != "none"
        served.append(ServedModel(
            name, translator, config.data.src_lang, config.data.tgt_lang,
            {"preset": model.name, "arch": model.arch.value, "attention": model.attention.type.value
             if model.arch.value == "rnn" else "multi-head",
             "parameters": translator.model.num_parameters(), "device": str(translator.device),
             "precision": translator.precision.name, "engine": export_format(folder) or "pytorch", "threads": share},
            [SearchProcess(folder, device, precision, share, max_tokens) for _ in range(processes)] if search_process
            else None, attends=attends, directory=str(Path(folder).resolve())))
    return served


def serve(model_args: Sequence[str], settings: ServeSettings | None = None) -> int:
    """Loads the models and serves until SIGTERM / SIGINT; returns 0 after a clean stop.
    ``settings.processes`` search processes per model share the cores (``threads`` each, or
    their share; continuous batching leaves one core to the HTTP side)."""
    settings = settings or ServeSettings()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    check_address(settings.host, settings.port)  # before the models load: a bad address or a taken port fails in a second
    batching, limits = settings.batching, settings.limits
    cores = torch.get_num_threads()
    torch.set_num_threads(1)  # this process parses and queues; the searches run in their own processes
    models = load_models(model_specs(model_args), settings.device, settings.precision, settings.threads,
                         processes=settings.processes, max_tokens=batching.max_tokens,
                         continuous=batching.mode == "continuous", cores=cores)
    app = create_app(models, settings.search, batching, limits, settings.align, show_paths=settings.show_paths)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            timeout_graceful_shutdown=60, access_log=False,
                            http=bounded_protocol(limits.read_timeout, settings.max_connections))
    server = _Server(config)
    server.run()
    return 0 if server.started else 1


def check_address(host: str, port: int) -> None:
    """That this process can listen on ``host``:``port`` (every address the name resolves to,
    bound as asyncio's server binds them, then let go), or one line naming what is wrong and
    the fix."""
    try:
        infos = set(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE))
    except (socket.gaierror, UnicodeError) as err:
        raise MTError(f"--host {host}: {getattr(err, 'strerror', None) or err}: give an address of this machine "
                      "(127.0.0.1, the default, or 0.0.0.0 for every interface)") from None
    with contextlib.ExitStack() as held:
        for family, kind, proto, _, address in infos:
            sock = held.enter_context(socket.socket(family, kind, proto))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    raise MTError(f"port {port} on {host} is in use (another mt serve?): stop that server or pick "
                                  "another --port") from None
                raise MTError(f"cannot listen on {host}:{port}: {err.strerror}: give an address of this machine "
                              "(127.0.0.1 or 0.0.0.0)" + (" or a --port above 1023" if err.errno == errno.EACCES
                                                             else "")) from None


class _Server:
    """uvicorn's server with its signal handling kept, but without re-raising the signal at
    the end (uvicorn does, so the process would die by SIGTERM instead of exiting 0)."""

    def __init__(self, config) -> None:
        self._server = uvicorn.Server(config)
        self.started = False

    def run(self) -> None:
        server = self._server
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def stop(signum, frame) -> None:
            log.info("signal %d: no new connections; finishing the requests in flight", signum)
            server.should_exit = True

        for s in previous:
            signal.signal(s, stop)
        try:
            server.capture_signals = _no_capture  # type: ignore[method-assign]
            asyncio.run(server.serve())
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        self.started = server.started


def _no_capture():
    return contextlib.nullcontext()
