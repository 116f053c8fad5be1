"""Translated files waiting for their download (``POST /translate_file`` answers a URL).

Kept in memory, not on disk: nothing mt serve does writes into the folders it was started
from, and a restart leaves nothing behind. Bounded in bytes (the oldest go first) and in time
(``ttl`` seconds), as LibreTranslate removes its translated files after a while.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Download:
    name: str        # what the client's browser saves it as (ASCII)
    original: str    # the uploaded file's own name (any script)
    data: bytes
    media_type: str
    made: float


class Downloads:
    def __init__(self, max_bytes: int = 64 * 2**20, ttl: float = 3600.0) -> None:
        self.max_bytes, self.ttl = max_bytes, ttl
        self._items: OrderedDict[str, Download] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, name: str, data: bytes, media_type: str, original: str = "") -> str:
        """The key to fetch it by: an unguessable token, then the file's name (as LibreTranslate's)."""
        key = f"{secrets.token_urlsafe(16)}.{name}"
        with self._lock:
            self._expire()
            self._items[key] = Download(name, original or name, data, media_type, time.monotonic())
            self._bytes += len(data)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old.data)
        return key

    def get(self, key: str) -> Download | None:
        with self._lock:
            self._expire()
            return self._items.get(key)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._items:
            key, first = next(iter(self._items.items()))
            if now - first.made < self.ttl:
                break
            del self._items[key]
            self._bytes -= len(first.data)
