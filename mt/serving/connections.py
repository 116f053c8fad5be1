"""The HTTP connections of ``mt serve``: uvicorn's h11 protocol with two bounds it lacks.

- **A deadline on the headers.** uvicorn waits as long as a client likes for a request's
  headers; 200 clients sending a byte every half second held 200 connections for as long as
  they kept at it. A request whose headers are not complete ``read_timeout`` seconds after its
  first byte (or after the connection opened) gets 408 and the connection is closed. The body
  has the same deadline, kept by the app (``mt.serving.requests.read_body``).
- **A deadline on every body.** The app reads a body within ``read_timeout`` (408), but a
  route that never reads one (``GET /health`` with a ``Content-Length``, a path that is 404, a
  request refused at once as too large) would let a client dribble it for ever: a body still
  coming a second past the deadline closes the connection (408 if nothing was answered yet).
- **A cap on open connections.** Past ``max_connections``, a new connection is answered 503
  with ``Retry-After`` and ``{"error": ...}`` at once and closed, before it can hold anything.
  (uvicorn's own ``limit_concurrency`` answers in plain text, and only once the headers came.)
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def _response(status: int, reason: str, message: str, retry_after: int | None = None) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            "connection: close"]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header and body deadline and a connection cap (class
    attributes, set by ``bounded_protocol``). A request only notes when its headers and its
    body began (a timer armed and cancelled per request cost the server 8% of its CPU at
    128 clients); one sweep of all connections every ``SWEEP_S`` seconds closes the late."""

    read_timeout: float = 10.0
    max_connections: int = 1000
    SWEEP_S = 0.5
    _sweeping = False  # of this class (one per server): the sweep is scheduled

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._headers_since: float | None = self.loop.time()  # waiting for a request's headers since
        self._body_since: float | None = None                 # ... for its body since
        if len(self.connections) > self.max_connections:
            transport.write(_response(503, "Service Unavailable", f"the server holds {self.max_connections} "
                                      "connections (--max-connections): retry shortly", retry_after=1))
            transport.close()
            return
        cls = type(self)
        if not cls._sweeping:
            cls._sweeping = True
            self.loop.call_later(self.SWEEP_S, self._sweep, self.connections)

    def _sweep(self, connections: set) -> None:
        now = self.loop.time()
        for conn in list(connections):
            if isinstance(conn, BoundedH11Protocol):
                conn._check(now)
        if connections:
            self.loop.call_later(self.SWEEP_S, self._sweep, connections)
        else:
            type(self)._sweeping = False

    def data_received(self, data: bytes) -> None:
        if self._headers_since is None and self.conn.their_state is h11.IDLE:
            self._headers_since = self.loop.time()  # a new request's first bytes
        super().data_received(data)
        state = self.conn.their_state
        if state is not h11.IDLE:
            self._headers_since = None  # the headers are in (h11 leaves IDLE once it has parsed them all)
        if state is h11.SEND_BODY:
            if self._body_since is None:
                self._body_since = self.loop.time()
        else:
            self._body_since = None

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse: LibreTranslate's ``{"error": ...}``, not plain text."""
        if not self.transport.is_closing():
            self.transport.write(_response(400, "Bad Request", f"{msg} Send a valid HTTP/1.1 request."))
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Between requests uvicorn's keep-alive timeout closes an idle connection; the next
        # request's first byte starts its deadline (data_received), or now where some of it came
        # with the last one (pipelined) and waits in h11's buffer.
        waiting = self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])
        self._headers_since = self.loop.time() if waiting else None

    def _check(self, now: float) -> None:
        if self.transport.is_closing():
            return
        if self._headers_since is not None and now - self._headers_since > self.read_timeout \
                and self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(_response(408, "Request Timeout", f"the request's headers did not arrive within "
                                           f"{self.read_timeout:g} s (--read-timeout): send them at once"))
            self.transport.close()
        elif self._body_since is not None and now - self._body_since > self.read_timeout + 1.0 \
                and self.conn.their_state is h11.SEND_BODY:
            # A body still arriving a second past read_timeout: whatever the route did with it (the
            # app answers 408 itself where it reads one), the connection goes.
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(_response(408, "Request Timeout", f"the request's body did not arrive within "
                                               f"{self.read_timeout:g} s (--read-timeout): send it at once"))
            self.transport.close()


def bounded_protocol(read_timeout: float, max_connections: int) -> type[BoundedH11Protocol]:
    """The protocol class uvicorn is given (``uvicorn.Config(http=...)``), with these bounds."""
    return type("BoundedH11Protocol", (BoundedH11Protocol,),
                {"read_timeout": read_timeout, "max_connections": max_connections})
