"""The ``mt explore`` page: one self-contained HTML file to browse every sentence, model and head.

The page (``explorer.html`` beside this file) is plain HTML, CSS and JavaScript with the
data inlined as JSON: it opens from disk in any browser, with no server, no network and
nothing fetched. This module only writes it; ``mt.analysis.explore`` decodes the sentences
and gathers the data. Attention matrices travel as base64 integers (``pack_weights``:
uint16 for the map that ``mt align`` reads, uint8 for a Transformer's layer/head
thumbnails) to keep hundreds of sentences in a few megabytes; the page merges pieces to
words as ``mt align`` does (sum over a source word's pieces, mean over a target word's
pieces), so its threshold slider shows the links ``mt align --rule threshold --pharaoh``
writes.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from mt.errors import MTError
from mt.files import output_file

TEMPLATE = Path(__file__).with_name("explorer.html")
DATA_MARK = "/*__MT_DATA__*/null"
COLORMAP_MARK = "/*__MT_COLORMAP__*/"


def with_colormap(page: str) -> str:
    """``page`` with the colour map both pages draw with (colormap.js) in place of its mark."""
    return page.replace(COLORMAP_MARK, (Path(__file__).parent / "colormap.js").read_text(encoding="utf-8"))


def pack_weights(matrix: np.ndarray, dtype: type = np.uint16) -> str:
    """Weights in [0, 1] as base64 integers (row-major)."""
    top = np.iinfo(dtype).max
    ints = np.rint(np.clip(np.asarray(matrix, dtype=np.float64), 0.0, 1.0) * top).astype(dtype)
    return base64.b64encode(ints.astype(ints.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def write_explorer(data: dict, path: str | Path, title: str = "mt explore") -> Path:
    """The page with ``data`` inlined. ``</`` is escaped inside the JSON so no sentence can
    end the script element."""
    page = with_colormap(TEMPLATE.read_text(encoding="utf-8"))
    if DATA_MARK not in page:
        raise MTError(f"{TEMPLATE} lacks its data mark; reinstall mt")
    payload = json.dumps({**data, "title": title}, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    page = page.replace(DATA_MARK, payload).replace("__MT_TITLE__", _html_escape(title))
    path = Path(path)
    with output_file(path) as handle:  # whole or not at all: a page cut short is never left
        handle.write(page)
    return path


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
