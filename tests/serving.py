"""A real ``mt serve`` in a subprocess on a free loopback port, for the serve tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mt serve ARGS --port FREE --threads 1``, started and answering /health (or an AssertionError
    with its output). Greedy unless ``args`` say otherwise (``--beam 1`` first, so a later ``--beam``
    wins): the tests compare what it serves with ``Translator.translate``'s default, greedy search;
    the command's own default beam is tested in tests/test_cli.py."""

    def __init__(self, *args: str) -> None:
        args = ("--beam", "1", *args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"mt_serve_{self.port}.log", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "mt", "serve", *args, "--port", str(self.port),
                                      "--threads", "1"], cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mt serve exited {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"mt serve did not answer within 60 s: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self.log.close()


