"""SentencePiece subword models, trained on the training split and cached.

Every model uses the same special ids, so the rest of the code can rely on them:
``PAD=0, UNK=1, BOS=2, EOS=3``. A trained model is cached under a hash of the training
text and the settings, so a second run with the same data reuses it: ``spm/KEY.model`` beside
``KEY.model.json`` (its size and checksum), both written atomically; a damaged entry is set
aside and trained again with one warning line.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from mt.config import TokenizerType
from mt.errors import DataError, WriteError, write_failure
from mt.files import atomic_write_bytes, atomic_write_text

log = logging.getLogger("mt.train")

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Tokenizer:
    """A SentencePiece model with the project's pre- and post-processing, so training,
    validation and translation all turn text into ids the same way."""

    def __init__(self, model_path: str | Path) -> None:
        self.path = Path(model_path)
        if not self.path.is_file():
            raise DataError(f"missing SentencePiece model {self.path}: the model directory is incomplete")
        try:
            # Held in memory: a checkpoint's folder is replaced under a resumed run, and the model
            # is written into every model directory from these bytes, not from the path.
            self.data = self.path.read_bytes()
            self.sp = spm.SentencePieceProcessor(model_proto=self.data)
        except (RuntimeError, OSError) as err:
            raise DataError(f"{self.path} is damaged: not a SentencePiece model ({str(err).splitlines()[0][:120]}); "
                            "copy it again from where it was written, or retrain") from err
        if (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()) != (PAD, UNK, BOS, EOS):
            raise DataError(f"{self.path} was not trained with pad=0 unk=1 bos=2 eos=3; retrain it with mt")

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    @staticmethod
    def normalize(text: str) -> str:
        return " ".join(text.split())

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Subword ids without BOS/EOS. A few texts are encoded one by one: SentencePiece's list
        call starts a thread pool each time, about 30x the time of one line alone, and a server
        encodes every request (docs/lab/benchmarks.md, "Continuous batching")."""
        if len(texts) < 16:
            return [self.sp.encode(self.normalize(t)) for t in texts]
        return self.sp.encode([self.normalize(t) for t in texts])

    def pieces(self, text: str) -> list[str]:
        return self.sp.encode(self.normalize(text), out_type=str)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Text of each id sequence; PAD, BOS and EOS dropped, UNK shown as ⁇ (as
        SentencePiece writes it), so a reader sees where the vocabulary failed."""
        texts = [self.sp.decode([i for i in seq if i > EOS or i == UNK]) for seq in ids]
        # SentencePiece writes UNK as " ⁇ ", doubling the space of a following word piece.
        return [re.sub(" {2,}", " ", t).strip() if "\u2047" in t else t for t in texts]

    def id_to_piece(self, ids: Sequence[int]) -> list[str]:
        return [self.sp.id_to_piece(int(i)) for i in ids]

    def word_index(self, text: str, ids: Sequence[int]) -> list[int]:
        """The whitespace word of each piece of ``ids`` (the encoding of ``text``), for
        alignments over words: encoding word by word gives the same pieces (SentencePiece never
        joins across spaces), else the word-boundary marker of each piece decides."""
        per_word = self.sp.encode(self.normalize(text).split())
        if [i for w in per_word for i in w] == list(ids):
            return [w for w, pieces in enumerate(per_word) for _ in pieces]
        return word_ids(self.id_to_piece(ids))


def word_ids(pieces: Sequence[str], marker: str = "\u2581") -> list[int]:
    """Word index of each SentencePiece piece: a piece starting with ``marker`` opens a word."""
    ids, word = [], -1
    for n, piece in enumerate(pieces):
        if piece.startswith(marker) or n == 0:
            word += 1
        ids.append(word)
    return ids


def train_tokenizer(
    texts: Iterable[str],
    out_path: Path,
    vocab_size: int,
    model_type: TokenizerType,
    character_coverage: float = 1.0,
    max_sentences: int = 2_000_000,
) -> Path:
    """Trains a SentencePiece model on ``texts`` (any iterable: a list, or a corpus streamed in
    chunks) and writes it to ``out_path``. A corpus of more than ``max_sentences`` lines is
    sampled (SentencePiece's own reservoir sampling, seeded) in one pass, never cut at its first
    lines: a sorted corpus would give a skewed vocabulary. Only the sample is held in memory."""
    sentences = (normalized for t in texts if (normalized := Tokenizer.normalize(t)))
    first = next(sentences, None)
    if first is None:
        raise DataError("cannot train a tokenizer on an empty training split")
    model = io.BytesIO()
    spm.set_random_generator_seed(1)  # the same sample, so the same model, every time
    spm.SentencePieceTrainer.train(
        sentence_iterator=itertools.chain([first], sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type.value,
        character_coverage=character_coverage,
        hard_vocab_limit=False,  # small corpora may have fewer pieces than asked for
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
        input_sentence_size=max_sentences, shuffle_input_sentence=True,
        num_threads=2, minloglevel=2,
    )
    data = model.getvalue()
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_path, data)
        _write_seal(out_path, data)
    except OSError as err:
        why = write_failure(err) or str(err)
        raise WriteError(f"could not write the tokenizer model {out_path} ({why}): free space there, or point "
                         "cache_dir at a folder with room") from err
    return out_path


def _seal(path: Path) -> Path:
    """The cached model's size and checksum, written after it: ``NAME.model.json``."""
    return path.with_name(path.name + ".json")


def _write_seal(path: Path, data: bytes) -> None:
    atomic_write_text(_seal(path), json.dumps({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}))


def _cached(path: Path) -> Tokenizer | None:
    """The cached model at ``path`` if it proves complete; a damaged one is set aside (as
    ``NAME.model.damaged``) with one warning line, and None says: train it again. A model
    without its seal (cached by an earlier mt, or killed between the two renames) is taken
    once SentencePiece reads it, and sealed."""
    if not path.is_file():
        return None
    why = None
    try:
        data = path.read_bytes()
        seal = json.loads(_seal(path).read_text()) if _seal(path).is_file() else None
        if seal is not None and (seal.get("size") != len(data) or seal.get("sha256") != hashlib.sha256(data).hexdigest()):
            why = f"{len(data)} bytes where {seal.get('size')} were written" if seal.get("size") != len(data) \
                else "its checksum differs from the one written"
        else:
            tokenizer = Tokenizer(path)
            if seal is None:
                with contextlib.suppress(OSError):  # a read-only shared cache: used as it is, unsealed
                    _write_seal(path, data)
            return tokenizer
    except (OSError, ValueError, AttributeError, DataError) as err:
        why = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
    aside = path.with_name(path.name + ".damaged")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        pass  # another process set it aside first
    except OSError as err:
        raise WriteError(f"the tokenizer cache {path} is damaged ({why}) and could not be set aside ({err}): "
                         "delete it, or point cache_dir at a folder you can write") from None
    log.warning("tokenizer cache %s is damaged (%s): set aside as %s and trained again", path, why, aside.name)
    return None


def _settings_digest(vocab_size: int, model_type: TokenizerType, character_coverage: float, version: str):
    return hashlib.sha256(f"{vocab_size}|{model_type.value}|{character_coverage}|{version}\n".encode())


def cached_tokenizer(
    texts: Sequence[str],
    cache_dir: str | Path,
    vocab_size: int,
    model_type: TokenizerType,
    character_coverage: float = 1.0,
) -> Tokenizer:
    """The tokenizer for ``texts`` (held in memory) and settings, trained once and then reused."""
    digest = _settings_digest(vocab_size, model_type, character_coverage, "v2")
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\n")
    path = Path(cache_dir) / "spm" / f"{digest.hexdigest()[:20]}.model"
    return _cached(path) or Tokenizer(train_tokenizer(texts, path, vocab_size, model_type, character_coverage))


def streamed_tokenizer(
    fingerprint: str,
    chunks: Callable[[], Iterable[Sequence[str]]],
    cache_dir: str | Path,
    vocab_size: int,
    model_type: TokenizerType,
    character_coverage: float = 1.0,
) -> Tokenizer:
    """The tokenizer of a corpus streamed in chunks (mt.data.streams), keyed by the corpus's
    ``fingerprint`` (a hash of its files) and the settings; ``chunks`` is called, for one pass,
    only when no cached model exists."""
    digest = _settings_digest(vocab_size, model_type, character_coverage, "stream v1")
    digest.update(fingerprint.encode())
    path = Path(cache_dir) / "spm" / f"{digest.hexdigest()[:20]}.model"
    return _cached(path) or Tokenizer(train_tokenizer(itertools.chain.from_iterable(chunks()), path, vocab_size,
                                                      model_type, character_coverage))


def copy_tokenizer(tokenizer: Tokenizer, out_path: Path) -> None:
    out_path.write_bytes(tokenizer.data)
