"""A request's fields, read as LibreTranslate reads them: JSON, a form, a multipart form or
the query string, with the body's size and the time a client takes to send it both bounded.

A client that sends its body a byte at a time holds a connection and a task for as long as it
likes unless something stops it: past ``read_timeout`` seconds the answer is 408 and the
connection is closed (the headers have their own deadline, in ``mt.serving.connections``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

from mt.serving.protocol import Limits, RequestError, form_fields, gather

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


async def within(awaitable, seconds: float):
    """``awaitable`` awaited for at most ``seconds`` (``asyncio.TimeoutError`` past them). On
    Python 3.11+ a timer in this task, not ``wait_for``'s task a call: measurably cheaper per
    request in the server."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # Python 3.10


async def read_body(request: Request, limits: Limits) -> bytes:
    """The raw body: 413 past ``limits.max_body`` bytes, 408 past ``limits.read_timeout`` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isascii() and declared.strip().isdigit() \
            and int(declared) > limits.max_body:
        raise RequestError(413, f"the body is {int(declared)} bytes, more than the {limits.max_body} a request may "
                                "send")
    chunks, size = [], 0

    async def receive_all() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body:
                raise RequestError(413, f"the body is more than the {limits.max_body} bytes a request may send")
            chunks.append(chunk)

    try:
        await within(receive_all(), limits.read_timeout)
    except asyncio.TimeoutError:
        raise RequestError(408, f"the body did not arrive within {limits.read_timeout:g} s (--read-timeout): send it "
                                "at once") from None
    except ClientDisconnect:
        raise RequestError(400, "the client went away before its body arrived") from None
    return b"".join(chunks)


def query_fields(request: Request) -> list[tuple[str, str]]:
    """The query string's fields (LibreTranslate reads ``POST /translate?q=...`` as a form)."""
    raw = request.scope.get("query_string", b"")
    if not raw:
        return []
    try:
        return parse_qsl(raw.decode("latin-1"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise RequestError(400, "the query string is not valid UTF-8 (percent-encoded): send UTF-8 text") from None


async def read_fields(request: Request, limits: Limits, files: bool = False) -> dict[str, Any]:
    """Every field of the request (the body's over the query string's); with ``files``,
    a multipart form's uploads come as ``(filename, bytes)``."""
    raw = await read_body(request, limits)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body: Mapping[str, Any] | None
    if kind == MULTIPART:
        body = await _multipart(request, raw, files)
    else:
        try:
            text = raw.decode("utf-8-sig")  # a byte order mark first is read past, as Flask does
        except UnicodeDecodeError as err:
            raise RequestError(400, f"the body is not valid UTF-8 (byte {err.start}): send UTF-8 text") from None
        if kind == FORM:
            try:
                body = form_fields(parse_qsl(text, keep_blank_values=True, errors="strict"))
            except UnicodeDecodeError:
                raise RequestError(400, "the form is not valid UTF-8: send UTF-8 text") from None
        elif not text.strip():
            body = None  # the fields may all be in the query string
        else:
            body = _json(text)
            if not isinstance(body, Mapping):
                raise RequestError(400, "the body must be a JSON object such as {\"q\": \"Hello\", \"source\": "
                                        "\"en\", \"target\": \"de\"}")
    return gather(query_fields(request), body)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RequestError(400, f"the body is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") \
            from None
    except RecursionError:
        raise RequestError(400, "the body's JSON is nested too deep: send a flat object") from None
    except ValueError as err:  # e.g. an integer of more than 4,300 digits
        raise RequestError(400, f"the body's JSON holds a value Python cannot read ({str(err)[:80]})") from None


async def _multipart(request: Request, raw: bytes, files: bool) -> dict[str, Any]:
    replay = Request(request.scope, receive=_replay(raw))
    try:
        form = await replay.form(max_files=1, max_fields=100)
    except Exception as err:  # noqa: BLE001 - a malformed multipart body is the client's
        raise RequestError(400, f"the multipart form could not be read: {str(err)[:120]}") from None
    pairs: list[tuple[str, Any]] = []
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if not files:
                    raise RequestError(400, f"'{key}' is a file: send files to POST /translate_file")
                pairs.append((key, (value.filename or "", await value.read())))
            else:
                pairs.append((key, value))
    finally:
        await form.close()
    return form_fields(pairs)


def _replay(raw: bytes):
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return receive
