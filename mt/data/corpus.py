"""Parallel corpora: the training split as a stream, validation and test as ``datasets``.

``open_corpus`` gives the configured corpus without reading it: its training split is a
``PairSource`` (mt.data.streams) read a chunk at a time, so a corpus of millions of pairs is
never held in memory; validation and test (small) load as ``datasets.Dataset`` with the
columns ``src`` and ``tgt`` (raw text, one sentence each) and, where gold alignments exist,
``align`` (Pharaoh links). ``load_corpus`` loads all three splits, for small corpora and
tests. Reading checks what users get wrong most often: a missing file, sides of unequal
length, invalid UTF-8; each becomes a one-line ``DataError`` naming file and fix.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets

from mt.config import CorpusSource, DataConfig
from mt.data.demo_corpus import ensure_demo_corpus
from mt.data.streams import DatasetPairs, PairSource, TextPairs, files_digest, saved_split_digest
from mt.errors import DataError

datasets.disable_progress_bars()


def resolve_text_file(base: Path) -> Path:
    """``base`` itself or ``base.gz``, whichever exists."""
    for candidate in (base, base.with_name(base.name + ".gz")):
        if candidate.is_file():
            return candidate
    raise DataError(f"missing file {base} (or {base.name}.gz): check data.dir and the split and language names")


# The two-letter language codes (ISO 639-1): a file suffix that is one names a language (test.de);
# any other (test.lc, test.tok) says nothing.
ISO_639_1 = frozenset("""aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy
da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io
is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na
nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss
st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu""".split())  # noqa: SIM905


def check_file_language(path: str | Path, lang: str, side: str, pair: str, models: str = "model's",
                        force_flag: str = "") -> None:
    """A file whose name says another language than the one a model reads or writes on that
    ``side`` (test.de given as the English source) is refused: the translation would be
    nonsense and the score near zero, with exit 0. Only a two-letter code as the last suffix
    (test.en, test.de.gz) counts; other names pass."""
    suffixes = [s.lstrip(".") for s in Path(path).suffixes if s != ".gz"]
    code = suffixes[-1].lower() if suffixes else ""
    if lang and code in ISO_639_1 and code != lang.lower():
        force = f", or {force_flag} if it really is {lang}" if force_flag else ""
        raise DataError(f"{path} looks like '{code}' text but the {models} {side} language is '{lang}' ({pair}): "
                        f"pass the {lang} file{force}")


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file (``.gz`` accepted), without line ends; empty lines kept."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file {path}: check the path")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path}: {err}") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: invalid UTF-8; convert the file to UTF-8 (e.g. with iconv)") from err
    return split_lines(text)


def split_lines(text: str) -> list[str]:
    """Lines on ``\n`` only (str.splitlines also splits on U+2028, U+0085, form feeds ...,
    which would give more output lines than input lines); a final newline ends the last line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_parallel(src_path: str | Path, tgt_path: str | Path | None) -> tuple[list[str], list[str] | None]:
    """The lines of a source file and, if given, of its line-aligned target (or reference,
    or alignment) file: the one check that both hold as many lines, for every command."""
    src = read_lines(src_path)
    if tgt_path is None:
        return src, None
    tgt = read_lines(tgt_path)
    if len(tgt) != len(src):
        raise DataError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
                        "they must pair line by line")
    return src, tgt


def load_parallel_files(src_path: str | Path, tgt_path: str | Path, align_path: str | Path | None = None) -> datasets.Dataset:
    """A parallel corpus from two line-aligned text files (``.gz`` accepted)."""
    src = read_lines(src_path)
    tgt = read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
            "line N of the source must translate line N of the target"
        )
    columns = {"src": src, "tgt": tgt}
    if align_path is not None and Path(align_path).is_file():
        align = read_lines(align_path)
        if len(align) != len(src):
            raise DataError(f"{align_path} has {len(align)} lines but {src_path} has {len(src)}")
        columns["align"] = align
    return datasets.Dataset.from_dict(columns)


def _pairs(raw: datasets.DatasetDict, cfg: DataConfig, origin: str, splits: list[str],
           content: Callable[[str], str] | None = None) -> datasets.DatasetDict:
    """``src`` / ``tgt`` columns from a DatasetDict whose sentences are in a column per
    language code, or (``data.hub_field``) in one column of {lang: text} dicts. Columns are
    selected and renamed in Arrow, not copied into Python lists, so a large corpus stays
    memory-mapped. ``content`` (local files: split -> a hash of its bytes) names the cache of
    the hub_field mapping, which datasets would otherwise name after the dataset's own
    fingerprint and read back stale when that does not follow the rows."""
    out = {}
    for name, split in zip(("train", "validation", "test"), splits):
        if split not in raw:
            raise DataError(f"{origin} has no split '{split}' (it has {sorted(raw)}): set data.hub_splits")
        part = raw[split]
        column = cfg.hub_field
        if column:
            if column not in part.column_names:
                raise DataError(f"{origin} has no column '{column}' (it has {part.column_names}): "
                                "set data.hub_field")
            first = part[0][column] if len(part) else {}
            for lang in (cfg.src_lang, cfg.tgt_lang):
                if first and lang not in first:
                    raise DataError(f"{origin} has no language '{lang}' in '{column}' "
                                    f"(it has {sorted(first)}): check data.src_lang and data.tgt_lang")
            named = {} if content is None else {"new_fingerprint": hashlib.sha256(
                f"{content(split)}|{_columns(cfg)}".encode()).hexdigest()[:32]}
            part = part.map(_split_translations, fn_kwargs={"column": column, "src": cfg.src_lang,
                                                            "tgt": cfg.tgt_lang},
                            batched=True, remove_columns=part.column_names, **named)
        else:
            for lang in (cfg.src_lang, cfg.tgt_lang):
                if lang not in part.column_names:
                    raise DataError(f"{origin} has no column '{lang}' (it has {part.column_names}): "
                                    "check data.src_lang / data.tgt_lang, or set data.hub_field")
            part = part.select_columns([cfg.src_lang, cfg.tgt_lang]).rename_columns(
                {cfg.src_lang: "src", cfg.tgt_lang: "tgt"})
        _check_text(part, f"{origin}, split {split}")
        out[name] = part
    return datasets.DatasetDict(out)


def _split_translations(batch: dict, column: str, src: str, tgt: str) -> dict:
    """{lang: text} dicts of one column into ``src`` / ``tgt`` columns (datasets.map, batched)."""
    return {"src": [p[src] for p in batch[column]], "tgt": [p[tgt] for p in batch[column]]}


def _check_text(part: datasets.Dataset, where: str) -> None:
    """Every sentence is text: string columns without a missing (null) row."""
    for column in ("src", "tgt"):
        feature = part.features[column]
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise DataError(f"{where}: column '{column}' holds {feature}, not text")
        nulls = part.data.column(column).null_count
        if nulls:
            row = next(i for i, v in enumerate(part.data.column(column).to_pylist()) if v is None)
            raise DataError(f"{where}, row {row + 1}: a sentence is not text (None); {nulls} such rows")


def load_hub_corpus(cfg: DataConfig) -> datasets.DatasetDict:
    """A parallel corpus from the Hugging Face hub (or any path ``datasets.load_dataset``
    takes), mapped to ``src`` / ``tgt`` columns."""
    if not cfg.hub_id:
        raise DataError("data.source=hub needs data.hub_id (e.g. bentrevett/multi30k), or data.dir for local files")
    try:
        raw = datasets.load_dataset(cfg.hub_id, cfg.hub_config or None)
    except Exception as err:  # network, unknown id, missing config: all end the same way for the user
        raise DataError(f"cannot load dataset '{cfg.hub_id}' from the hub ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}); offline, set data.dir to a local copy") from err
    return _pairs(raw, cfg, f"dataset '{cfg.hub_id}'", list(cfg.hub_splits))


def _load_tsv(path: Path) -> datasets.Dataset:
    src, tgt = [], []
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(f"{path}, line {number}: expected 2 tab-separated fields (source, target), "
                            f"found {len(fields)}")
        src.append(fields[0])
        tgt.append(fields[1])
    return datasets.Dataset.from_dict({"src": src, "tgt": tgt})


def _columns(cfg: DataConfig) -> str:
    """The settings that pick a dataset's ``src`` / ``tgt`` columns."""
    return f"{cfg.src_lang}|{cfg.tgt_lang}|{cfg.hub_field}"


def _local_structured(cfg: DataConfig, directory: Path) -> tuple[datasets.DatasetDict, Callable[[], str]]:
    """The three splits, and what the training split's rows are made of, as a hash (read when
    first asked for, except JSONL's): the bytes of its files and the columns picked. Not the
    library's fingerprint, which for local files follows their path and mtime (see DatasetPairs)."""
    prefixes = [cfg.train, cfg.valid, cfg.test]
    if cfg.source is CorpusSource.disk:
        try:
            raw = datasets.load_from_disk(str(directory))
        except (FileNotFoundError, ValueError) as err:
            raise DataError(f"{directory} is not a dataset saved with save_to_disk: {err}") from err
        if isinstance(raw, datasets.Dataset):
            raise DataError(f"{directory} holds one split; save a DatasetDict with train, validation and test")
        splits = list(cfg.hub_splits)
        saved = functools.cache(lambda split: saved_split_digest(directory / split))
        return (_pairs(raw, cfg, str(directory), splits, saved),
                lambda: f"disk|{splits[0]}|{_columns(cfg)}|{saved(splits[0])}")
    if cfg.source is CorpusSource.tsv:
        paths = [resolve_text_file(directory / f"{prefix}.tsv") for prefix in prefixes]
        return (datasets.DatasetDict({name: _load_tsv(path) for name, path in zip(("train", "validation", "test"), paths)}),
                lambda: f"tsv|{files_digest(paths[0])}")
    files = {p: resolve_text_file(directory / f"{p}.jsonl") for p in prefixes}
    digests = {p: files_digest(path) for p, path in files.items()}
    # datasets keys its Arrow conversion of local files by their path and mtime: a file rewritten
    # with its mtime kept would be read back stale. A configuration named after the bytes (the
    # builder's cache folder begins with it) converts each content once and reuses it after.
    name = "mt-" + hashlib.sha256("|".join(digests[p] for p in prefixes).encode()).hexdigest()[:16]
    try:
        raw = datasets.load_dataset("json", name=name, data_files={p: str(path) for p, path in files.items()})
    except Exception as err:  # the json builder raises several types for one cause: a bad line
        raise DataError(f"cannot read the JSONL files in {directory}: {str(err).splitlines()[0]}") from err
    return (_pairs(raw, cfg, str(directory), prefixes, lambda split: digests[split]),
            lambda: f"jsonl|{_columns(cfg)}|{digests[cfg.train]}")


@dataclass
class Corpus:
    """A configured corpus, opened but not read: the training split as a stream, the others
    (and the training split whole, where something needs it in memory) loaded when asked."""

    train: PairSource
    loaders: dict[str, Callable[[], datasets.Dataset]]  # train, validation, test

    def split(self, name: str) -> datasets.Dataset:
        """``train``, ``validation`` or ``test``, in memory."""
        return self.loaders[name]()


def open_corpus(cfg: DataConfig) -> Corpus:
    """The configured corpus (the demo corpus is generated on first use)."""
    if cfg.source is CorpusSource.hub and not cfg.dir:
        return _from_datasets(load_hub_corpus(cfg), None, f"dataset '{cfg.hub_id}'")
    if not cfg.dir:
        raise DataError("data.dir is not set: point it at the corpus folder, e.g. data.dir=path/to/corpus")
    directory = Path(cfg.dir)
    if cfg.source is CorpusSource.demo:
        ensure_demo_corpus(directory, tuple(cfg.demo_sizes), cfg.demo_seed)
    elif not directory.is_dir():
        raise DataError(f"data.dir {directory} is not a directory: point data.dir at the corpus folder")
    if cfg.source in (CorpusSource.tsv, CorpusSource.jsonl, CorpusSource.disk):
        return _from_datasets(*_local_structured(cfg, directory), str(directory))
    files = {}
    for split, key, prefix in (("train", "train", cfg.train), ("validation", "valid", cfg.valid),
                               ("test", "test", cfg.test)):
        files[split] = (_split_file(directory, key, prefix, "src_lang", cfg.src_lang),
                        _split_file(directory, key, prefix, "tgt_lang", cfg.tgt_lang), directory / f"{prefix}.align")
    return Corpus(TextPairs(*files["train"][:2]),
                  {split: (lambda f=f: load_parallel_files(*f)) for split, f in files.items()})


def _split_file(directory: Path, key: str, prefix: str, lang_key: str, lang: str) -> Path:
    """``{prefix}.{lang}`` (or .gz) in the corpus folder; when missing, the settings that name it,
    with the file names of that language the folder does hold (Multi30k calls its validation
    split ``val``: data.valid=val)."""
    try:
        return resolve_text_file(directory / f"{prefix}.{lang}")
    except DataError:
        pass
    held = sorted(p.name.removesuffix(".gz") for p in directory.glob(f"*.{lang}*")
                  if p.name.removesuffix(".gz").endswith(f".{lang}"))
    hint = f" (the folder has {', '.join(held[:6])}{', ...' if len(held) > 6 else ''})" if held else ""
    raise DataError(f"missing file {directory / f'{prefix}.{lang}'} (or .gz){hint}: name the {key} split with "
                    f"data.{key}=NAME (NAME.{lang}), the language with data.{lang_key}, the folder with data.dir")


def _from_datasets(splits: datasets.DatasetDict, content: Callable[[], str] | None, origin: str) -> Corpus:
    """``content``: a hash of what the training rows are made of, or None (hub) for the library's fingerprint."""
    return Corpus(DatasetPairs(splits["train"], f"{origin}, split train", content),
                  {name: (lambda name=name: splits[name]) for name in ("train", "validation", "test")})


def load_corpus(cfg: DataConfig) -> datasets.DatasetDict:
    """Train, validation and test splits of the configured corpus, all in memory."""
    corpus = open_corpus(cfg)
    return datasets.DatasetDict({name: corpus.split(name) for name in ("train", "validation", "test")})
