"""Translating HTML and keeping its markup: inline tags placed by the model's word alignment.

``parse_html`` cuts a fragment or page into segments at block elements (``p``, ``div``,
``li``, ``h1``-``h6``, ``td``, ... and a ``br`` outside inline elements) and, inside a block,
at sentence-final punctuation (inside inline elements too); each segment's text
(entities decoded, whitespace collapsed) is a sentence for the model. ``script``, ``style``,
``code``, ``pre`` (and a few more, ``SKIPPED``), elements marked ``translate="no"`` or
``class="notranslate"``, comments and the doctype are kept byte for byte, and so is every tag
as written (attributes and all): only the text between tags changes.

``HtmlDocument.render`` takes each sentence's translation and word links and puts every inline
tag (``b``, ``a``, ``span``, ... any element that is not a block) around the target words that
the tagged source words link to, as Mozilla's Bergamot does: the tag covers the target words
from the first to the last one linked to its source words (a tag around part of a word covers
the whole word). Tags then nest in the order of the source: a tag stays inside its source
parent, and two that would cross in the target are trimmed, the later one giving way. A tag
whose words link to nothing, an empty one (``<a name=x></a>``) and a void one (``<img>``,
``<wbr>``, ``<br>`` inside an inline element) keep a position: right after the target word
linked to the nearest source word before it (the start where there is none). No tag is ever
dropped or repeated, so the output has every tag of the input exactly once, and inline tags
nest properly where the input's did.

``render_nodes`` is the fallback for a model without attention: each text node translated
apart (as LibreTranslate does), every tag where it was.

The app calls it in two phases, for translation happens in a batching worker::

    doc = parse_html(html)
    translations = translator.translate(doc.sentences)                # attention kept
    pairs = [translation_pair(translator, t, options) for t in translations]
    html = doc.render([AlignedSegment.of_pair(p) for p in pairs])
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from mt.decoding.sentences import ends_sentence
from mt.errors import MTError

if TYPE_CHECKING:
    from mt.decoding.attention_alignment import AlignedPair

# Elements that end a segment (their tags are kept as they are, between segments).
BLOCK = frozenset((
    "address", "article", "aside", "audio", "base", "blockquote", "body", "canvas", "caption", "center", "col",
    "colgroup", "dd", "details", "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer",
    "form", "frame", "frameset", "h1", "h2", "h3", "h4", "h5", "h6", "head", "header", "hgroup", "hr", "html",
    "iframe", "legend", "li", "link", "main", "menu", "meta", "nav", "noscript", "object", "ol", "optgroup",
    "option", "p", "param", "section", "select", "source", "summary", "table", "tbody", "td", "tfoot", "th",
    "thead", "title", "tr", "track", "ul", "video"))
# Elements whose whole content is kept byte for byte (never translated).
SKIPPED = frozenset(("script", "style", "code", "pre", "kbd", "samp", "textarea", "svg", "math", "template"))
# Elements with no end tag in HTML.
VOID = frozenset(("area", "base", "br", "col", "embed", "hr", "img", "input", "keygen", "link", "meta", "param",
                  "source", "track", "wbr"))
_WORD = re.compile(r"\S+")
# What one block may hold: inline elements nested inside each other, and inline elements in
# all. Placement walks the nesting recursively and checks each element against those placed
# before it; past these bounds a page is refused in one line (no real page comes near them).
MAX_DEPTH = 100
MAX_ELEMENTS = 2000
_BREAK = re.compile(r"<br[\s/>]", re.IGNORECASE)


@dataclass(frozen=True)
class AlignedSegment:
    """One sentence's translation: its whitespace words and the word links
    ``(source word, target word)``, 0-based, over ``sentence.split()`` and ``target_words``."""

    target_words: list[str]
    links: set[tuple[int, int]] = field(default_factory=set)

    @classmethod
    def of_pair(cls, pair: AlignedPair) -> AlignedSegment:
        """From ``mt.decoding.attention_alignment.translation_pair`` (or ``align_pairs``): its words are the
        whitespace words of the source and of the translation, as here."""
        return cls(list(pair.tgt_words), set(pair.links))


# ---------------------------------------------------------------------------------------------
# Parsing: the input as a list of events, each with its raw text (together: the input, byte for byte)


@dataclass
class _Event:
    kind: str            # data, start, end, startend, comment, decl, pi, atomic (a skipped element, whole)
    raw: str
    tag: str = ""
    text: str = ""       # data: the text with entities decoded
    block: bool = False  # atomic: whether it ends a segment


class _Recorder(HTMLParser):
    """Every parser event with the offset where it starts, so each one's raw text is the input up
    to the next event's start."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html = html
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", html)]
        self.events: list[tuple[int, str, str, str, list]] = []  # (offset, kind, tag, text, attrs)

    def _add(self, kind: str, tag: str = "", text: str = "", attrs: list | None = None) -> None:
        line, column = self.getpos()
        self.events.append((self.line_starts[line - 1] + column, kind, tag, text, attrs or []))

    def handle_starttag(self, tag, attrs):
        self._add("start", tag, attrs=attrs)

    def handle_startendtag(self, tag, attrs):
        self._add("startend", tag, attrs=attrs)

    def handle_endtag(self, tag):
        self._add("end", tag)

    def handle_data(self, data):
        self._add("data", text=data)

    def handle_comment(self, data):
        self._add("comment")

    def handle_decl(self, decl):
        self._add("decl")

    def handle_pi(self, data):
        self._add("pi")

    def unknown_decl(self, data):
        self._add("decl")


def _events(html: str) -> list[_Event]:
    """The input's events, a skipped element (script, code, translate="no", ...) as one atomic
    event from its start tag to its end tag."""
    recorder = _Recorder(html)
    recorder.feed(html)
    recorder.close()
    raw_events = recorder.events
    offsets = [e[0] for e in raw_events] + [len(html)]
    if raw_events and offsets[0] != 0:  # never seen; keeps the input whole all the same
        raw_events.insert(0, (0, "data", "", html[:offsets[0]], []))
        offsets.insert(0, 0)
    events: list[_Event] = []
    skip: tuple[str, int, int] | None = None  # (tag, depth, first event) of the skipped element open
    for n, (start, kind, tag, text, attrs) in enumerate(raw_events):
        raw = html[start:offsets[n + 1]]
        if skip is not None:
            name, depth, first = skip
            if tag == name and kind == "start":
                skip = (name, depth + 1, first)
            elif tag == name and kind == "end":
                skip = (name, depth - 1, first) if depth > 1 else None
                if skip is None:
                    events.append(_Event("atomic", html[offsets[first]:offsets[n + 1]], name,
                                         block=name in BLOCK or name == "pre"))
            continue
        if kind == "start" and tag not in VOID and _not_translated(tag, attrs):
            skip = (tag, 1, n)
            continue
        events.append(_Event(kind, raw, tag, text))
    if skip is not None:  # never closed: kept to the end of the input
        events.append(_Event("atomic", html[offsets[skip[2]]:], skip[0], block=True))
    return events


def _not_translated(tag: str, attrs: list) -> bool:
    if tag in SKIPPED:
        return True
    for name, value in attrs:
        if name == "translate" and (value or "").strip().lower() == "no":
            return True
        if name == "class" and "notranslate" in (value or "").split():
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Segments: the events between two block boundaries, their words and inline structure


@dataclass
class _Item:
    """A zero-width thing of a segment: a void element, a comment, a tag left unmatched in its
    segment, a skipped inline element (``<code>...</code>``)."""

    raw: str
    offset: int          # in the segment's text
    order: int           # event index: source order
    parent: _Node | None = None
    glued: bool = False  # no whitespace between the word before and it
    glued_after: bool = False  # no whitespace between it and the word after
    edge: str = ""       # "head": an end tag of an element opened in an earlier segment; "tail": a start
    # tag of one that ends in a later segment. They are written at the segment's edges, in source
    # order (_render_segment), so that the output nests wherever the model puts the words.


@dataclass
class _Node:
    """An inline element of a segment, start and end tag matched, over source words [first, last)."""

    open: str
    close: str
    start: int          # offsets in the segment's text of its content
    end: int
    order: int
    parent: _Node | None = None
    first: int = 0
    last: int = 0
    close_order: int = 1 << 30  # its end tag's event index
    lead: str = ""   # punctuation of its first word before its start tag ("(" of "(<a>link</a>")
    trail: str = ""  # ... of its last word after its end tag
    children: list[_Node] = field(default_factory=list)

    @property
    def tag(self) -> str:
        match = re.match(r"<\s*([^\s/>]+)", self.open)
        return match.group(1).lower() if match else ""


@dataclass
class _Segment:
    events: list[_Event]
    text: str = ""
    words: list[tuple[int, int]] = field(default_factory=list)  # each word's (start, end) in text
    nodes: list[_Node] = field(default_factory=list)             # every element, in source (pre-)order
    items: list[_Item] = field(default_factory=list)             # every zero-width thing, in source order
    sentences: list[tuple[int, int]] = field(default_factory=list)  # word ranges sent to the model

    @property
    def raw(self) -> str:
        return "".join(e.raw for e in self.events)


def _analyse(segment: _Segment, split_sentences: bool) -> None:
    text_parts: list[str] = []
    offset = 0
    stack: list[_Node] = []
    roots: list[_Node] = []
    pending: list[tuple[int, str, int, str]] = []  # zero-width things: (event index, raw, offset, edge)
    breaks: set[int] = set()  # those that are a <br> (with a space after them in the text)
    elements = 0

    def unmatched(node: _Node) -> None:
        """An element not closed in its segment: its start tag stands alone, its children move up."""
        siblings = node.parent.children if node.parent is not None else roots
        at = siblings.index(node)
        siblings[at:at + 1] = node.children
        for child in node.children:
            child.parent = node.parent
        pending.append((node.order, node.open, node.start, "tail"))

    for order, event in enumerate(segment.events):
        if event.kind == "data":
            text_parts.append(event.text)
            offset += len(event.text)
        elif event.kind == "start" and event.tag not in VOID:
            if len(stack) >= MAX_DEPTH:
                raise MTError(f"the HTML nests more than {MAX_DEPTH} inline elements inside each other: flatten it")
            elements += 1
            if elements > MAX_ELEMENTS:
                raise MTError(f"a block of the HTML holds more than {MAX_ELEMENTS} inline elements: split it into "
                              "paragraphs")
            node = _Node(event.raw, "", offset, offset, order, parent=stack[-1] if stack else None)
            (stack[-1].children if stack else roots).append(node)
            stack.append(node)
        elif event.kind == "end" and event.tag not in VOID and any(n.tag == event.tag for n in stack):
            while stack[-1].tag != event.tag:  # elements left open inside it
                unmatched(stack.pop())
            node = stack.pop()
            node.close, node.end, node.close_order = event.raw, offset, order
        else:
            stray_end = event.kind == "end" and event.tag not in VOID
            pending.append((order, event.raw, offset, "head" if stray_end else ""))
            if event.tag == "br":  # a line break inside an inline element: a space between words
                text_parts.append(" ")
                offset += 1
                breaks.add(order)
    while stack:
        unmatched(stack.pop())
    segment.text = text = "".join(text_parts)
    segment.words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    starts = [s for s, _ in segment.words]
    ends = [e for _, e in segment.words]

    def walk(node: _Node) -> None:
        segment.nodes.append(node)
        node.first = bisect.bisect_right(ends, node.start)    # the first word ending after its start
        node.last = bisect.bisect_left(starts, node.end)      # the words starting before its end
        if node.last < node.first or node.start == node.end:
            node.last = node.first
        if node.last > node.first and any(c.isalnum() for c in text[node.start:node.end]):
            # punctuation of its first or last word left outside it ("(<a>link</a>)."): kept outside
            # in the target too where the target word has the same
            s, _ = segment.words[node.first]
            _, e = segment.words[node.last - 1]
            lead, trail = text[s:node.start], text[node.end:e]
            node.lead = lead if lead and not any(c.isalnum() for c in lead) else ""
            node.trail = trail if trail and not any(c.isalnum() for c in trail) else ""
        for child in node.children:
            walk(child)

    for root in roots:
        walk(root)
    pending.sort()
    parents = _innermost(segment.nodes, [order for order, *_ in pending])
    segment.items = [_Item(raw, at, order, parent if not edge else None,
                           *_glue(text, at, at + 1 if order in breaks else at), edge=edge)
                     for (order, raw, at, edge), parent in zip(pending, parents)]
    n = len(segment.words)
    if n:
        cuts = [0]
        if split_sentences:
            # Inside inline elements too: pages wrap whole paragraphs in <span> or <font>, and a model
            # reads sentences. An element over a cut is placed on the words of both (render merges them).
            cuts += [k + 1 for k in range(n - 1) if _ends_sentence(segment, k)]
        cuts.append(n)
        segment.sentences = [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def _glue(text: str, start: int, end: int) -> tuple[bool, bool]:
    """Whether a zero-width thing at ``start``-``end`` of ``text`` touches the word before, and
    the word after (no whitespace between)."""
    return start > 0 and not text[start - 1].isspace(), end < len(text) and not text[end].isspace()


def _innermost(nodes: list[_Node], orders: list[int]) -> list[_Node | None]:
    """For each event index of ``orders`` (ascending), the innermost element whose tags enclose
    it (``nodes`` in pre-order, so in the order of their start tags, properly nested)."""
    found: list[_Node | None] = []
    stack: list[_Node] = []
    k = 0
    for order in orders:
        while k < len(nodes) and nodes[k].order < order:
            while stack and stack[-1].close_order < nodes[k].order:
                stack.pop()
            stack.append(nodes[k])
            k += 1
        while stack and stack[-1].close_order < order:
            stack.pop()
        found.append(stack[-1] if stack else None)
    return found


def _ends_sentence(segment: _Segment, k: int) -> bool:
    """Word k of the segment ends a sentence (``mt.decoding.sentences``: punctuation, not an
    abbreviation or an initial, a capital or a digit next)."""
    s, e = segment.words[k]
    ns, ne = segment.words[k + 1]
    return ends_sentence(segment.text[s:e], segment.text[ns:ne])


# ---------------------------------------------------------------------------------------------
# The document


@dataclass
class HtmlDocument:
    """An HTML fragment or page cut into segments. ``sentences``: what to translate with word
    links, in order (one or more per segment with words; empty segments are not sent);
    ``text_nodes``: what to translate for the fallback, each text node's text."""

    parts: list[str | _Segment]
    sentences: list[str]
    text_nodes: list[str]
    _nodes: list[tuple[int, str, str, str]] = field(default_factory=list, repr=False)  # (event, lead, text, trail)
    _events: list[_Event] = field(default_factory=list, repr=False)

    def render(self, aligned: Sequence[AlignedSegment]) -> str:
        """The document with each sentence replaced by its translation and every inline tag
        placed by the links. ``aligned``: one per ``sentences``, in order."""
        if len(aligned) != len(self.sentences):
            raise MTError(f"render needs one translation per sentence: {len(self.sentences)} sentences, "
                          f"{len(aligned)} translations")
        out: list[str] = []
        at = 0
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            if not part.sentences:
                out.append(part.raw)
                continue
            words: list[str] = []
            links: set[tuple[int, int]] = set()
            for first, last in part.sentences:
                segment = aligned[at]
                at += 1
                links |= {(first + i, len(words) + j) for i, j in segment.links
                          if 0 <= i < last - first and 0 <= j < len(segment.target_words)}
                words += segment.target_words
            out.append(_render_segment(part, words, links))
        return "".join(out)

    def render_nodes(self, translations: Sequence[str]) -> str:
        """The fallback: each text node (``text_nodes``) replaced by its translation, its
        surrounding whitespace and every tag kept where they were."""
        if len(translations) != len(self.text_nodes):
            raise MTError(f"render_nodes needs one translation per text node: {len(self.text_nodes)} nodes, "
                          f"{len(translations)} translations")
        replaced = {first: (last, lead + _escape(" ".join(t.split())) + trail)
                    for (first, last, lead, trail), t in zip(self._nodes, translations)}
        out: list[str] = []
        n = 0
        while n < len(self._events):
            if n in replaced:
                last, text = replaced[n]
                out.append(text)
                n = last
            else:
                out.append(self._events[n].raw)
                n += 1
        return "".join(out)


def parse_html(html: str, split_sentences: bool = True) -> HtmlDocument:
    """``html`` (a fragment or a whole page) cut into segments for ``HtmlDocument.render``.
    ``split_sentences``: also cut a block at sentence-final punctuation."""
    events = _events(html)
    parts: list[str | _Segment] = []
    current: list[_Event] = []
    depth = 0  # inline elements open in the current segment (a <br> inside one does not split)

    def flush() -> None:
        nonlocal depth
        if current:
            segment = _Segment(list(current))
            _analyse(segment, split_sentences)
            parts.append(segment)
            current.clear()
        depth = 0

    for event in events:
        boundary = (event.kind in ("decl", "pi") or (event.kind == "atomic" and event.block)
                    or (event.kind in ("start", "end", "startend") and event.tag in BLOCK and event.tag != "br")
                    or (event.tag == "br" and event.kind in ("start", "startend") and depth == 0))
        if boundary:
            flush()
            parts.append(event.raw)
            continue
        if event.kind == "start" and event.tag not in VOID:
            depth += 1
        elif event.kind == "end" and event.tag not in VOID and depth:
            depth -= 1
        current.append(event)
    flush()
    sentences = [" ".join(part.text[s:e] for s, e in part.words[first:last])
                 for part in parts if isinstance(part, _Segment) for first, last in part.sentences]
    nodes, text_nodes = _text_nodes(events)
    return HtmlDocument(parts, sentences, text_nodes, nodes, events)


def _text_nodes(events: list[_Event]) -> tuple[list[tuple[int, int, str, str]], list[str]]:
    """Runs of data events with words in them: (first event, end event, leading and trailing
    whitespace escaped) and their normalised text."""
    nodes, texts = [], []
    n = 0
    while n < len(events):
        if events[n].kind != "data":
            n += 1
            continue
        last = n
        while last < len(events) and events[last].kind == "data":
            last += 1
        text = "".join(e.text for e in events[n:last])
        if text.strip():
            stripped = text.strip()
            lead = text[: len(text) - len(text.lstrip())]
            trail = text[len(text.rstrip()):]
            nodes.append((n, last, _escape(lead), _escape(trail)))
            texts.append(" ".join(stripped.split()))
        n = last
    return nodes, texts


# ---------------------------------------------------------------------------------------------
# Placement


@dataclass
class _Placed:
    """An element in the target: words [a, b), or zero-width at gap ``a`` when ``b`` is None."""

    node: _Node
    a: int
    b: int | None
    children: list[_Placed] = field(default_factory=list)      # elements inside it, in the target
    items: list[tuple[int, tuple[bool, bool], int, str]] = field(default_factory=list)  # (gap, glue, order, html)


def _render_segment(segment: _Segment, words: list[str], links: set[tuple[int, int]]) -> str:
    m = len(words)
    n = len(segment.words)
    targets: list[set[int]] = [set() for _ in range(n)]
    for i, j in links:
        if 0 <= i < n and 0 <= j < m:
            targets[i].add(j)

    # after[k]: the gap after the target word linked to source word k or the nearest one before it
    # that has a link; 0 where none has.
    after, last = [], 0
    for k in range(n):
        if targets[k]:
            last = max(targets[k]) + 1
        after.append(last)
    starts = [s for s, _ in segment.words]

    def gap_after(word: int) -> int:
        return after[min(word, n - 1)] if n else 0

    def word_before(offset: int) -> int:
        """The last source word starting before ``offset`` (-1: none)."""
        return bisect.bisect_left(starts, offset) - 1

    root = _Placed(_Node("", "", 0, len(segment.text), -1), 0, m)
    placed: dict[int, _Placed] = {}
    accepted: list[_Placed] = []
    for node in segment.nodes:  # pre-order: a parent before its children
        parent = placed[node.parent.order] if node.parent is not None else root
        here = _Placed(node, 0, None)
        placed[node.order] = here
        if parent.b is None:  # inside a zero-width element: zero-width too
            here.a = parent.a
            continue
        linked = set().union(*targets[node.first:node.last]) if node.last > node.first else set()
        if not linked:
            before = node.first - 1 if node.last > node.first else word_before(node.start)
            here.a = _clip(gap_after(before) if before >= 0 else 0, parent)
            continue
        a, b = max(min(linked), parent.a), min(max(linked) + 1, parent.b)
        if a >= b:
            here.a = parent.a if max(linked) < parent.a else parent.b
            continue
        changed = True
        while changed and a < b:  # give way to every element placed before that it would cross
            changed = False
            for other in accepted:
                if other.b is None:
                    continue
                if other.a < a < other.b < b:
                    a, changed = other.b, True
                elif a < other.a < b < other.b:
                    b, changed = other.a, True
        if a >= b:
            here.a = a
            continue
        here.a, here.b = a, b
        accepted.append(here)

    # The target tree: elements with words by containment (ties: source order, outer first).
    spans = sorted((p for p in placed.values() if p.b is not None), key=lambda p: (p.a, -p.b, p.node.order))
    stack = [root]
    for span in spans:
        while not (stack[-1].a <= span.a and span.b <= stack[-1].b):
            stack.pop()
        stack[-1].children.append(span)
        stack.append(span)

    def home(start: _Placed, gap: int) -> _Placed:
        """The deepest element under ``start`` whose words surround ``gap``."""
        while True:
            inner = next((c for c in start.children if c.a < gap < c.b), None)  # type: ignore[operator]
            if inner is None:
                return start
            start = inner

    zero_html: dict[int, str] = {}
    inner: dict[int, list[tuple[int, _Placed | str]]] = {}  # an element's order -> what is directly inside it
    for c in placed.values():
        if c.node.parent is not None:
            inner.setdefault(c.node.parent.order, []).append((c.node.order, c))
    for it in segment.items:
        if it.parent is not None:
            inner.setdefault(it.parent.order, []).append((it.order, it.raw))

    def zero(p: _Placed) -> str:
        """A zero-width element with everything inside it, in source order."""
        inside = sorted(inner.get(p.node.order, []), key=lambda x: x[0])
        return p.node.open + "".join(h if isinstance(h, str) else zero(h) for _, h in inside) + p.node.close

    for p in placed.values():
        if p.b is None and (p.node.parent is None or placed[p.node.parent.order].b is not None):
            zero_html[p.node.order] = zero(p)
            container = placed[p.node.parent.order] if p.node.parent is not None else root
            gap = _clip(p.a, container)
            glue = _glue(segment.text, p.node.start, p.node.end)
            home(container, gap).items.append((gap, glue, p.node.order, zero_html[p.node.order]))
    head = [item.raw for item in segment.items if item.edge == "head"]
    tail = [item.raw for item in segment.items if item.edge == "tail"]
    for item in segment.items:
        if item.edge:
            continue
        container = placed[item.parent.order] if item.parent is not None else root
        if container.b is None:
            continue  # inside a zero-width element: written with it
        before = word_before(item.offset)
        gap = _clip(gap_after(before) if before >= 0 else 0, container)
        home(container, gap).items.append((gap, (item.glued, item.glued_after), item.order, item.raw))

    text = segment.text
    lead = text[: segment.words[0][0]]
    trail = text[segment.words[-1][1]:]
    # Tags of elements that cross the segment's edges cover all its words: the start tags of
    # elements still open at its end go first, the end tags of elements opened before it last
    # ("<b>one <p>two</p> three</b>": each part stays bold). With both, the end tags (which
    # close what came before) go first and the start tags last, as in the source.
    if head and tail:
        before, after = head, tail
    else:
        before, after = tail, head
    return "".join(before) + _escape(lead) + _write(root, words) + _escape(trail) + "".join(after)


def _clip(gap: int, parent: _Placed) -> int:
    if parent.b is None:
        return parent.a
    return min(max(gap, parent.a), parent.b)


def _write(p: _Placed, words: list[str], lead: int = 0, trail: int = 0) -> str:
    """Element ``p`` with its words, the first written without its first ``lead`` characters and
    the last without its last ``trail`` (the caller writes them outside)."""
    assert p.b is not None
    out = [p.node.open]
    items: dict[int, list[tuple[int, tuple[bool, bool], int, str]]] = {}
    for item in p.items:
        items.setdefault(item[0], []).append(item)
    children = sorted(p.children, key=lambda c: c.a)
    gap, c = p.a, 0
    while True:
        here = sorted(items.get(gap, []), key=lambda it: it[2])
        if p.a < gap < p.b:  # between two words: each thing keeps the side it touched
            out += [it[3] for it in here if it[1][0]]
            if not any(it[1] == (True, True) and _BREAK.match(it[3]) for it in here):  # a <br> parts them itself
                out.append(" ")
            out += [it[3] + " " for it in here if not it[1][0] and not it[1][1]]
            out += [it[3] for it in here if not it[1][0] and it[1][1]]
        else:
            out += [it[3] for it in here]
        if gap >= p.b:
            break
        if c < len(children) and children[c].a == gap:
            child = children[c]
            assert child.b is not None
            outer_lead = lead if child.a == p.a else 0     # what the caller strips of its first word
            outer_trail = trail if child.b == p.b else 0
            first, last = words[child.a], words[child.b - 1]
            inner_lead = max(outer_lead, len(child.node.lead) if first.startswith(child.node.lead) else 0)
            inner_trail = max(outer_trail, len(child.node.trail) if last.endswith(child.node.trail) else 0)
            if len(first) - inner_lead < 1 or len(last) - inner_trail < 1 or (
                    child.a == child.b - 1 and len(first) - inner_lead - inner_trail < 1):
                inner_lead, inner_trail = outer_lead, outer_trail  # nothing would be left inside it
            out.append(_escape(first[outer_lead:inner_lead]))
            out.append(_write(child, words, inner_lead, inner_trail))
            out.append(_escape(last[len(last) - inner_trail:len(last) - outer_trail]))
            gap = child.b
            c += 1
        else:
            word = words[gap]
            word = word[: len(word) - trail] if gap == p.b - 1 else word
            out.append(_escape(word[lead:] if gap == p.a else word))
            gap += 1
    out.append(p.node.close)
    return "".join(out)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\xa0", "&nbsp;")


def tag_counts(html: str) -> dict[tuple[str, str], int]:
    """How many start and end tags of each name ``html`` has (``("start", "b")``: 2, ...), as
    ``html.parser`` reads them: what a check that no tag was lost or repeated compares."""
    counts: dict[tuple[str, str], int] = {}

    class Counter(HTMLParser):
        def handle_starttag(self, tag, attrs):
            counts[("start", tag)] = counts.get(("start", tag), 0) + 1

        def handle_startendtag(self, tag, attrs):
            counts[("startend", tag)] = counts.get(("startend", tag), 0) + 1

        def handle_endtag(self, tag):
            counts[("end", tag)] = counts.get(("end", tag), 0) + 1

    parser = Counter(convert_charrefs=True)
    parser.feed(html)
    parser.close()
    return counts


def well_formed(html: str, ignore: Iterable[str] = VOID) -> bool:
    """Whether every end tag of ``html`` closes the element opened last (void elements aside)."""
    stack: list[str] = []
    ok = True
    skip = frozenset(ignore)

    class Checker(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag not in skip:
                stack.append(tag)

        def handle_endtag(self, tag):
            nonlocal ok
            if tag in skip:
                return
            if not stack or stack[-1] != tag:
                ok = False
            else:
                stack.pop()

    parser = Checker(convert_charrefs=True)
    parser.feed(html)
    parser.close()
    return ok and not stack
