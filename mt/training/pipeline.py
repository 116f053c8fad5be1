"""From a validated config to a trained model directory: corpus, tokenizers,
encoded data, model, trainer. Shared by ``mt train`` and the demo."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch

from mt.config import ExperimentConfig, Schedule, load_yaml
from mt.data.batching import EncodedCorpus, encode_pairs
from mt.data.corpus import open_corpus, read_lines
from mt.data.encoded import encoded_corpus
from mt.data.tokenizer import Tokenizer, streamed_tokenizer
from mt.decoding.translator import Translator
from mt.errors import DataError, MTError
from mt.files import output_kind
from mt.hardware import resolve_device
from mt.model_dir import MODEL_KINDS, corpus_of_run, existing_dir, legacy_kind
from mt.models import build_model
from mt.precision import kernel_cache_capacity, resolve_precision
from mt.training import distributed
from mt.training.alignment_loss import training_links
from mt.training.allocator import map_large_blocks
from mt.training.checkpoint import RunFiles, load_checkpoint
from mt.training.trainer import Trainer, TrainingData, TrainResult
from mt.visualization.curves import plot_training_curves

log = logging.getLogger("mt.train")


@dataclass
class PreparedData:
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    train: EncodedCorpus      # memory-mapped from the encoded-corpus cache
    valid: EncodedCorpus
    valid_src: list[str]      # validation text, for BLEU of the model's own translations
    valid_ref: list[str]


class Stages:
    """Logs how long each stage of the start took, so a user sees where it goes."""

    def __init__(self, started: float | None = None) -> None:
        self.started = time.perf_counter() if started is None else started
        self.last = time.perf_counter()

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        log.info("stage %s: %.1f s", stage, now - self.last)
        self.last = now


def prepare_data(cfg: ExperimentConfig, tokenizers: tuple[Tokenizer, Tokenizer] | None = None,
                 stages: Stages | None = None) -> PreparedData:
    """Corpus, tokenizers (trained and cached unless given) and the encoded splits. The training
    split is streamed: SentencePiece trains on a sample read in one pass, and the pairs are
    encoded once into a memory-mapped cache (mt.data.encoded) that later runs and every rank
    reuse; nothing holds the whole training text."""
    stages = stages or Stages()
    corpus = open_corpus(cfg.data)
    train = corpus.train
    train.fingerprint()  # reads the files once: a missing or unreadable file stops here
    stages.done("read")
    tok = cfg.data.tokenizer
    if tokenizers is not None:
        src_tok, tgt_tok = tokenizers
    elif tok.joint:  # one vocabulary for both languages (shared embeddings need it)
        src_tok = tgt_tok = streamed_tokenizer(f"joint|{train.fingerprint()}", train.sides, cfg.cache_dir,
                                               tok.src_vocab_size, tok.type, tok.character_coverage)
    else:
        src_tok = streamed_tokenizer(f"src|{train.fingerprint()}", lambda: train.side("src"), cfg.cache_dir,
                                     tok.src_vocab_size, tok.type, tok.character_coverage)
        tgt_tok = streamed_tokenizer(f"tgt|{train.fingerprint()}", lambda: train.side("tgt"), cfg.cache_dir,
                                     tok.tgt_vocab_size, tok.type, tok.character_coverage)
    if tokenizers is None:
        _say_smaller_vocabularies(cfg, src_tok, tgt_tok)
    stages.done("tokenizer")
    encoded = encoded_corpus(train, src_tok, tgt_tok, cfg.cache_dir, cfg.data.max_len, cfg.data.max_ratio,
                             progress=sys.stderr.isatty())
    if cfg.train.alignment_loss:  # links need the training text: read into memory for this
        encoded.links = _training_links(cfg, corpus.split("train"), encoded, src_tok, tgt_tok)
    stages.done("encode")
    valid = corpus.split("validation")
    valid_src, valid_ref = list(valid["src"]), list(valid["tgt"])
    valid_enc = encode_pairs(src_tok.encode(valid_src), tgt_tok.encode(valid_ref))
    log.info("data: %d training pairs kept; skipped %d empty, %d longer than %d subwords, %d with a length "
             "ratio over %g; %d validation pairs; vocabularies %d (%s) / %d (%s)", len(encoded),
             encoded.skipped_empty, encoded.skipped_long, cfg.data.max_len, encoded.skipped_ratio,
             cfg.data.max_ratio, len(valid), len(src_tok), cfg.data.src_lang, len(tgt_tok), cfg.data.tgt_lang)
    return PreparedData(src_tok, tgt_tok, encoded, valid_enc, valid_src, valid_ref)


def _say_smaller_vocabularies(cfg: ExperimentConfig, src_tok: Tokenizer, tgt_tok: Tokenizer) -> None:
    """SentencePiece stops where a small corpus runs out of pieces (hard_vocab_limit=false): a
    vocabulary smaller than asked is fine, but the user who asked should hear it."""
    tok = cfg.data.tokenizer
    sides = [("src_vocab_size", tok.src_vocab_size, src_tok)]
    if not tok.joint:
        sides.append(("tgt_vocab_size", tok.tgt_vocab_size, tgt_tok))
    for key, asked, tokenizer in sides:
        if len(tokenizer) < asked:
            log.warning("data.tokenizer.%s=%d asked, but the training text gave %d pieces (%s): the vocabulary is "
                        "that size; set it at most %d to silence this", key, asked, len(tokenizer),
                        "both languages" if tok.joint else cfg.data.src_lang if key.startswith("src")
                        else cfg.data.tgt_lang, len(tokenizer))


def _training_links(cfg: ExperimentConfig, train: datasets.Dataset, encoded: EncodedCorpus,
                    src_tok: Tokenizer, tgt_tok: Tokenizer) -> list:
    """Piece links of the kept training pairs, from data.train_alignments or the corpus's own
    ``{train}.align``."""
    if cfg.data.train_alignments:
        origin = cfg.data.train_alignments
        lines = read_lines(origin)
    elif "align" in train.column_names:
        origin, lines = f"{cfg.data.dir}/{cfg.data.train}.align", list(train["align"])
    else:
        raise DataError(f"train.alignment_loss={cfg.train.alignment_loss} needs word alignments of the training "
                        "pairs: set data.train_alignments=FILE (Pharaoh i-j, a line per pair, e.g. from eflomal)")
    if len(lines) != len(train):
        raise DataError(f"{origin} has {len(lines)} lines but the training corpus has {len(train)} pairs: "
                        "it must align the training pairs, a line each, in their order")
    src, tgt = train["src"], train["tgt"]
    keep = encoded.kept
    links = training_links([src[i] for i in keep], [tgt[i] for i in keep], [lines[i] for i in keep],
                           encoded.src, encoded.tgt, src_tok, tgt_tok, origin, [i + 1 for i in keep])
    log.info("alignment supervision: %d training pairs, %d piece links (%s)", len(links),
             sum(len(x) for x in links), origin)
    return links


def resumed_config(new: ExperimentConfig, resume_changes: Sequence[str] = (), prefix: str = "") -> ExperimentConfig:
    """The configuration a ``train.resume`` run continues with: the one its checkpoint was
    written with, where only the ``resume_changes`` keys (mt.config.RUN_CONTROL_KEYS) take the
    new command line's values. The device too: a run trained with train.device=cpu on a GPU
    machine resumes on the CPU unless the resume says train.device again."""
    path = existing_dir(Path(new.train.resume) / "checkpoints" / "last")
    if path is None:
        raise MTError(f"no checkpoint at {Path(new.train.resume) / 'checkpoints' / 'last'}: train.resume takes "
                      "the run directory of an earlier mt train")
    cfg = load_yaml(path / "config.yaml", ExperimentConfig)
    cfg = dataclasses.replace(cfg, data=corpus_of_run(cfg.data, path / "config.yaml", "resume from the folder the "
                                                      "run was trained in"))
    fields = {key.split(".", 1)[1]: getattr(new.train, key.split(".", 1)[1]) for key in resume_changes}
    if fields:
        world = distributed.world()
        before, after = (resolve_device(distributed.device_for(d, world))
                         for d in (cfg.train.device, fields.get("device", cfg.train.device)))
        if before != after:
            log.warning("%strain.device changes from %s (%s) to %s (%s) on resume: the run continues there, but "
                        "another device computes with other kernels and draws dropout from another generator, so "
                        "it will not end with exactly the weights of an uninterrupted run", prefix,
                        cfg.train.device, before, fields["device"], after)
        resized = [f"train.{k}" for k in ("epochs", "max_steps", "max_seconds")
                   if k in fields and fields[k] != getattr(cfg.train, k)]
        if resized and cfg.train.schedule is Schedule.linear:
            log.warning("%s%s changes the length of a run whose rate decays linearly to its end (schedule=linear): "
                        "the rate follows the new length from here, so it rises again where the run now has "
                        "further to go", prefix, " and ".join(resized))
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **fields))
        log.info("%sresume changes %s", prefix, ", ".join(f"train.{k}={v}" for k, v in fields.items()))
    return cfg


def check_new_run_dir(run_dir: Path, replace: bool = False) -> None:
    """A new run never starts over an earlier one in ``run_dir`` (its model and checkpoints would be
    replaced) unless ``replace``, nor over a file or a folder of the user's where it writes;
    ``mt train`` asks before Hydra writes its record into the folder."""
    earlier = []
    for place in (run_dir / "model", run_dir / "checkpoints" / "last"):
        if place.is_symlink() or (place.exists() and not place.is_dir()):
            raise MTError(f"{place} is in the way (a file, not a folder mt wrote): move it elsewhere, or give "
                          "this run a new folder (hydra.run.dir=...)")
        found = existing_dir(place)
        if found is None:
            continue
        if output_kind(found, legacy_kind) not in MODEL_KINDS:
            raise MTError(f"{found} is in the way and is not a model mt wrote: move it elsewhere (mt never "
                          "replaces a folder it did not write), or give this run a new folder (hydra.run.dir=...)")
        earlier.append("model" if place.name == "model" else "checkpoints")
    if earlier and not replace:
        raise MTError(f"{run_dir} already holds a training run ({' and '.join(earlier)}): continue it with "
                      f"train.resume={run_dir}, or give this run a new folder (hydra.run.dir=runs/NAME)")


def run_training(cfg: ExperimentConfig, run_dir: str | Path, progress: str = "auto", name: str = "",
                 resume_changes: Sequence[str] = (), replace: bool = False, started: float | None = None) -> TrainResult:
    """Trains the configured model; the best one is written to ``run_dir/model``.

    With ``train.resume=RUN_DIR`` the run in RUN_DIR continues from its last checkpoint,
    with the configuration and tokenizers it was started with, and writes there;
    ``resume_changes`` names the ``train.*`` keys (mt.config.RUN_CONTROL_KEYS) whose new
    values in ``cfg`` replace the checkpoint's, e.g. ``train.epochs`` to extend the run.
    ``progress``: auto (a bar on a terminal, plain lines otherwise), bar, lines or off.
    A new run never starts over an earlier one in ``run_dir`` (its model and checkpoints would
    be replaced) unless ``replace`` says so (the demo, which retrains its own runs).
    ``started`` (``time.perf_counter``) is when the command began, the zero of the ``wall``
    clock in metrics.jsonl; by default, this call.
    """
    prefix = f"[{name}] " if name else ""
    stages = Stages(started)
    resume = None
    if cfg.train.resume:
        run_dir = Path(cfg.train.resume)
        cfg = resumed_config(cfg, resume_changes, prefix)  # the run's own, its device included
        device = resolve_device(distributed.device_for(cfg.train.device, distributed.world()))
        checkpoint = load_checkpoint(run_dir / "checkpoints" / "last", device)
        log.info("%sresuming %s at epoch %d, step %d (its own configuration)", prefix, run_dir,
                 checkpoint.progress.epoch, checkpoint.progress.step)
        resume = (checkpoint.training_state, checkpoint.progress)
    else:
        check_new_run_dir(Path(run_dir), replace)
        device = resolve_device(distributed.device_for(cfg.train.device, distributed.world()))
        unread = cfg.model.unread()
        if unread:
            log.warning("%s%s: not read by %s (kept for a sweep over architectures)", prefix, ", ".join(unread),
                        "the Transformer" if cfg.model.arch.value == "transformer" else "the RNN models")
        unread = cfg.train.unread()
        if unread:
            log.warning("%s%s: not read by schedule=%s (only schedule=linear decays from a share of the run)",
                        prefix, ", ".join(unread), cfg.train.schedule.value)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if device.type == "cpu" and cfg.train.mmap_threshold_mb:
        said = map_large_blocks(int(cfg.train.mmap_threshold_mb * 2**20))
        if said:
            log.info("%smemory: %s (train.mmap_threshold_mb=0: glibc's default)", prefix, said)
        else:
            log.warning("%strain.mmap_threshold_mb=%g not applied: malloc is not glibc's, or MALLOC_* / "
                        "GLIBC_TUNABLES are set, which take precedence", prefix,
                        cfg.train.mmap_threshold_mb)
    torch.manual_seed(cfg.train.seed)
    if resume is not None:
        loaded = checkpoint.loaded
        data = prepare_data(cfg, (loaded.src_tokenizer, loaded.tgt_tokenizer), stages)
        model = loaded.model
    else:
        with distributed.main_first():  # under torchrun, rank 0 writes the corpus and tokenizer caches
            data = prepare_data(cfg, stages=stages)
        model = build_model(cfg.model, len(data.src_tokenizer), len(data.tgt_tokenizer)).to(device)
    if cfg.train.activation_checkpointing:  # the config allows it for the Transformer only
        model.set_activation_checkpointing(True)
    precision = resolve_precision(cfg.train.precision.value, device, kernel_cache_capacity(cfg.model.arch.value))
    log.info("%smodel %s: %s parameters, device %s, %s", prefix, cfg.model.name,
             f"{model.num_parameters():,}", device, precision.describe())
    translator = Translator(model, data.src_tokenizer, data.tgt_tokenizer, device, precision, cfg.train.alignment_shift,
                            (cfg.data.src_lang, cfg.data.tgt_lang))

    trainer = Trainer(model, cfg.train, TrainingData(data.train, data.valid, data.valid_src, data.valid_ref),
                      translator, RunFiles(run_dir, model, cfg, data.src_tokenizer, data.tgt_tokenizer),
                      progress=progress, name=name, resume_from=resume, precision=precision,
                      started=stages.started)
    result = trainer.fit()
    if result.history and distributed.world().main:
        plot_training_curves(result.history, run_dir / "curves.png", cfg.train.label_smoothing)
    log.info("%sbest validation %s %.2f; model directory: %s", prefix, cfg.train.metric.value,
             abs(result.best_score), result.best_dir)
    return result
