"""A training split encoded once into flat arrays on disk, memory-mapped by every later run.

    {cache_dir}/encoded/{key}/
        src.bin, tgt.bin        subword ids of the kept pairs, one after another (uint16 where
                                the vocabulary fits, int32 else)
        src.offsets.npy, tgt.offsets.npy   where each pair's ids start (int64, pairs + 1)
        kept.npy                the index in the input of each kept pair
        meta.json               counts, dtypes, what was skipped, each file's size, and a checksum
                                of itself and every file; written last

The key hashes the text (mt.data.streams fingerprints), both SentencePiece models' bytes
and the filters (``data.max_len``, ``data.max_ratio``), so a change to any of them encodes
afresh. The folder is written under a temporary name, fsynced, and renamed into place, so a
run killed while encoding leaves nothing that a later run trusts; before mapping, every
file's size and the checksum are checked, and a damaged entry is set aside (``KEY.damaged``)
and encoded again with one warning line. Every process (each DDP rank,
each run) maps the same files: the ids live once in the page cache, not once per process.
Encoding runs SentencePiece's own threads over chunks of pairs, with a progress bar.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mt.data.batching import EncodedCorpus, TokenRows, keep_mask
from mt.data.streams import CHUNK, PairSource
from mt.data.tokenizer import Tokenizer
from mt.errors import WriteError, write_failure
from mt.files import fresh_temp_dir, fsync_path, fsync_tree, sha256_file, temp_name

log = logging.getLogger("mt.train")
FORMAT = 2  # 2: sizes and a checksum in meta.json
META = "meta.json"
# Every one hashed on every mapping: 0.9 s for 350 MB (4.5M pairs) on a Zen 5 (docs/lab/benchmarks.md, "Reliability")
FILES = ("src.bin", "tgt.bin", "src.offsets.npy", "tgt.offsets.npy", "kept.npy")


class DamagedCache(Exception):
    """An encoded-corpus folder that does not prove itself complete."""


def _checksum(folder: Path, meta: dict) -> str:
    digest = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True).encode())
    for name in FILES:
        digest.update(sha256_file(folder / name).encode())
    return digest.hexdigest()


def verify_encoded(folder: Path) -> dict:
    """``meta.json`` of ``folder`` once every file has its size and the checksum holds; else
    ``DamagedCache`` saying what is wrong."""
    try:
        meta = json.loads((folder / META).read_text())
    except FileNotFoundError:
        raise DamagedCache(f"no {META}") from None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DamagedCache(f"{META} unreadable ({type(err).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("sizes"), dict):
        raise DamagedCache(f"{META} is not one this mt writes")
    for name in FILES:
        want = meta["sizes"].get(name)
        have = (folder / name).stat().st_size if (folder / name).is_file() else None
        if have != want:
            raise DamagedCache(f"{name} is {'missing' if have is None else f'{have} bytes'} where {want} were written")
    if _checksum(folder, meta) != meta.get("checksum"):
        raise DamagedCache("the checksum of its files differs from the one written")
    return meta


def cache_key(source: PairSource, src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: int | None,
              max_ratio: float) -> str:
    digest = hashlib.sha256(f"format {FORMAT}|{source.fingerprint()}|{max_len}|{max_ratio}|".encode())
    for tok in (src_tok, tgt_tok):
        digest.update(tok.data)
    return digest.hexdigest()[:24]


def _dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def map_encoded(folder: Path) -> EncodedCorpus:
    """The encoded corpus in ``folder``, checked (``verify_encoded``) and memory-mapped read-only."""
    meta = verify_encoded(folder)
    rows = []
    for side in ("src", "tgt"):
        offsets = np.load(folder / f"{side}.offsets.npy", mmap_mode="r")
        count = int(offsets[-1])
        ids = np.memmap(folder / f"{side}.bin", dtype=meta["dtypes"][side], mode="r", shape=(count,)) if count \
            else np.zeros(0, dtype=meta["dtypes"][side])
        rows.append(TokenRows(ids, offsets))
    return EncodedCorpus(rows[0], rows[1], meta["skipped_empty"], meta["skipped_long"], meta["skipped_ratio"],
                         np.load(folder / "kept.npy", mmap_mode="r"))


def encoded_corpus(source: PairSource, src_tok: Tokenizer, tgt_tok: Tokenizer, cache_dir: str | Path,
                   max_len: int | None = None, max_ratio: float = 0.0, progress: bool = False,
                   chunk: int = CHUNK) -> EncodedCorpus:
    """The kept pairs of ``source`` encoded, from the cache or encoded into it now."""
    folder = Path(cache_dir) / "encoded" / cache_key(source, src_tok, tgt_tok, max_len, max_ratio)
    if folder.exists():
        try:
            mapped = map_encoded(folder)
            log.info("encoded corpus: reusing %s", folder)
            return mapped
        except DamagedCache as err:
            _set_aside(folder, str(err))
    tmp = temp_name(folder)
    try:
        tmp = fresh_temp_dir(folder)
        _encode_into(tmp, source, src_tok, tgt_tok, max_len, max_ratio, progress, chunk)
        fsync_tree(tmp)
        try:
            tmp.rename(folder)
            fsync_path(folder.parent)
        except OSError:  # another process finished the same encoding first: keep theirs
            if not (folder / META).is_file():
                raise
    except OSError as err:
        why = write_failure(err)
        if why is None:
            raise
        raise WriteError(f"could not write the encoded corpus to {folder.parent} ({why}); the partial files were "
                         "removed. It takes about 2 bytes a subword and 24 a pair (350 MB for 4.5M short pairs): "
                         "free space there or set cache_dir= to a disk with room") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        return map_encoded(folder)
    except DamagedCache as err:  # damaged between the rename and now: the disk, or another hand
        raise WriteError(f"the encoded corpus {folder} was damaged right after it was written ({err}): check the "
                         f"disk, delete {folder} and run again") from None


def _set_aside(folder: Path, why: str) -> None:
    """Moves a damaged entry out of the way (replacing an earlier one set aside for the same key)."""
    aside = folder.with_name(folder.name + ".damaged")
    shutil.rmtree(aside, ignore_errors=True)
    try:
        folder.rename(aside)
    except FileNotFoundError:
        pass  # another process set it aside first
    except OSError as err:  # e.g. another's rename in between: never map it
        raise WriteError(f"the encoded corpus {folder} is damaged ({why}) and could not be set aside ({err}): "
                         "delete that folder and run again") from None
    log.warning("encoded corpus %s is damaged (%s): set aside as %s and encoded again", folder, why, aside.name)


def _encode_into(folder: Path, source: PairSource, src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: int | None,
                 max_ratio: float, progress: bool, chunk: int) -> None:
    start = time.perf_counter()
    dtypes = {"src": _dtype(len(src_tok)), "tgt": _dtype(len(tgt_tok))}
    lengths: dict[str, list[np.ndarray]] = {"src": [], "tgt": []}
    kept: list[np.ndarray] = []
    skipped = np.zeros(3, dtype=np.int64)
    seen = 0
    threads = os.cpu_count() or 1
    bar = tqdm(unit="pairs", disable=not progress, desc="encoding", unit_scale=True)
    with contextlib.ExitStack() as files:
        handles = {side: files.enter_context(open(folder / f"{side}.bin", "wb")) for side in dtypes}
        for src, tgt in source.chunks(chunk):
            ids = {"src": src_tok.sp.encode([Tokenizer.normalize(t) for t in src], num_threads=threads),
                   "tgt": tgt_tok.sp.encode([Tokenizer.normalize(t) for t in tgt], num_threads=threads)}
            n = {side: np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)) for side, rows in ids.items()}
            keep, *counts = keep_mask(n["src"], n["tgt"], max_len, max_ratio)
            skipped += counts
            index = np.flatnonzero(keep)
            kept.append(index + seen)
            for side, rows in ids.items():
                chosen = n[side][index]
                kept_rows = rows if len(index) == len(rows) else [rows[j] for j in index.tolist()]
                np.fromiter(itertools.chain.from_iterable(kept_rows), dtype=dtypes[side],
                            count=int(chosen.sum())).tofile(handles[side])
                lengths[side].append(chosen)
            seen += len(src)
            bar.update(len(src))
    bar.close()
    for side in dtypes:
        offsets = np.zeros(sum(len(x) for x in lengths[side]) + 1, dtype=np.int64)
        if lengths[side]:
            np.cumsum(np.concatenate(lengths[side]), out=offsets[1:])
        np.save(folder / f"{side}.offsets.npy", offsets)
    np.save(folder / "kept.npy", np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64))
    meta = {"format": FORMAT, "source": source.name, "pairs": seen, "kept": int(sum(len(k) for k in kept)),
            "skipped_empty": int(skipped[0]), "skipped_long": int(skipped[1]), "skipped_ratio": int(skipped[2]),
            "dtypes": {side: dtype.name for side, dtype in dtypes.items()}, "max_len": max_len,
            "max_ratio": max_ratio, "seconds": round(time.perf_counter() - start, 1),
            "sizes": {name: (folder / name).stat().st_size for name in FILES}}
    meta["checksum"] = _checksum(folder, meta)
    (folder / META).write_text(json.dumps(meta, indent=1))
    log.info("encoded corpus: %d pairs encoded in %.0f s, %d kept, into %s", seen, meta["seconds"], meta["kept"],
             folder.parent / folder.name.split(".mt-tmp-")[0].lstrip("."))
