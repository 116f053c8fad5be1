"""mt and JoeyNMT 2.3.0 side by side: training speed and peak memory on Multi30k en-de.

    .venv/bin/python studies/vs_joeynmt/bench_vs_joeynmt.py --seconds 150 --rounds 2 \
        --json studies/vs_joeynmt/results/DATE_vs_joeynmt_CPU.json

Installs JoeyNMT 2.3.0 into its own virtual environment (``.bench/joeynmt-venv``: torch
2.13.0 first, then joeynmt with sentencepiece 0.2.0 and importlib_metadata), writes the
Multi30k English-German text (``--multi30k``, by default ``../shared/data/multi30k``) and ONE
joint 8k unigram SentencePiece model that both systems use, and trains the same models in
both, alternating run by run (mt, JoeyNMT, mt, JoeyNMT, ...) so that a drift of the machine
hits both alike:

- transformer: 3+3 pre-norm layers, d_model 256, 4 heads, ff 1024, tied (shared source,
  target and output) embeddings, dropout 0.1;
- rnn: bidirectional GRU encoder 256 per direction, GRU decoder 256, Bahdanau attention,
  embeddings 128 (JoeyNMT's recurrent model with ``attention: bahdanau``).

Both take 4,096-token batches counted the same way (rows x longest side, padding
included), the same number of threads and the same allocator (``--jemalloc`` preloads
Debian's libjemalloc2 for both). Each run trains for ``--seconds``; the script reads each
system's own periodic target-tokens/s lines (JoeyNMT's "Tokens per Sec", mt's progress
lines, both over the interval since the previous line), drops the first ``--warmup-lines``
of each run and reports the median of the rest, and the peak resident memory (VmHWM)
of the training process. Prints a table and writes everything with the machine's CPU,
its flags, the versions and the date.

Two more modes, each alternating the systems the same way:

- ``--translate MODEL_DIR`` (an mt Transformer of the shape above): translation speed with
  the SAME weights in both systems, so at the same BLEU. The weights are converted to a
  JoeyNMT checkpoint (the two Transformers compute the same function: pre-norm, sinusoidal
  positions interleaved sin/cos, embeddings scaled by sqrt(d), tied output); both then
  translate test 2016, greedy and beam 5, in batches of the same sentences (4,096 source
  tokens), and the script reports the median sentences/s of ``--rounds`` runs (model loading
  excluded, warm: mt translates 50 lines first, JoeyNMT's figure is its "Generation took"
  for the test set after a first pass over 20 lines) and the sacreBLEU of each output.
- ``--quality-seconds T``: quality at a budget. Each system trains each model for T
  seconds of wall-clock training (mt: ``train.max_seconds``, its validations counted in;
  JoeyNMT: interrupted T seconds after its first update, without validation), and both
  are scored on test 2016 with beam 5 (sacreBLEU and chrF). For the RNN, which has no
  converter, JoeyNMT then resumes from its checkpoint up to mt's number of updates, so the
  translation speed is measured on two models trained on the same batches to about the same
  BLEU.
- ``--clock T``: validation BLEU against the wall clock, the figure a user feels. mt trains its
  Transformer preset for T seconds from a cold cache (``--mt-run DIR`` reads an mt run made
  beside it instead), then JoeyNMT trains its own published Transformer recipe for a corpus of
  this size (``iwslt14_deen_bpe.yaml``: 6+6 layers, dropout 0.3, AdamW 3e-4 with its plateau
  schedule) for T seconds from its start, validating every ``--valid-every`` updates. Both
  validate greedily on the first 500 validation sentences, cased sacreBLEU 13a; the script
  stamps each of JoeyNMT's validations with the clock and the seconds it took, reports the time
  each system takes to JoeyNMT's best validation BLEU (JoeyNMT's with and without its validations'
  time) and ``--plot`` draws both curves.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # mt.api's names are imported where needed (they bring torch)
BENCH = REPO / ".bench"
JOEY_VENV = BENCH / "joeynmt-venv"
JOEY_PACKAGES = ["joeynmt==2.3.0", "sentencepiece==0.2.0", "importlib_metadata"]
TORCH = "torch==2.13.0"
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
SPLITS = {"train": "train", "dev": "val", "test": "test_2016_flickr"}

MT_MODELS = {
    # The same model and training as the JoeyNMT config below: the preset's recipe of before issue 51
    # (constant 1e-3 after 100 warm-up updates, dropout 0.1 everywhere); --clock runs today's preset.
    "transformer": ["model=transformer", "model.share_embeddings=true", "model.tie_output=true",
                    "train.schedule=constant", "train.lr=0.001", "train.warmup_steps=100", "train.decay_from=0",
                    "train.betas=[0.9,0.999]", "model.dropout=0.1", "model.attention_dropout=null"],
    "rnn": ["model=rnn_bahdanau"],
}


def sh(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


# JoeyNMT 2.3 builds its plateau schedule with ReduceLROnPlateau(verbose=False); torch 2.13 has
# no ``verbose`` any more (it only printed). This module, imported at the start of every Python
# of JoeyNMT's environment, drops that one argument and changes nothing else.
TORCH_SHIM = """\
import torch.optim.lr_scheduler as _schedulers

class ReduceLROnPlateau(_schedulers.ReduceLROnPlateau):
    def __init__(self, optimizer, *args, verbose=False, **kwargs):
        super().__init__(optimizer, *args, **kwargs)

_schedulers.ReduceLROnPlateau = ReduceLROnPlateau
"""


def setup_joeynmt() -> Path:
    python = JOEY_VENV / "bin" / "python"
    stamp = JOEY_VENV / ".installed"
    if not stamp.is_file():
        sh([sys.executable, "-m", "venv", str(JOEY_VENV)])
        sh([str(python), "-m", "pip", "install", "-q", TORCH])
        sh([str(python), "-m", "pip", "install", "-q", *JOEY_PACKAGES])
        stamp.write_text("ok\n")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    shim = Path(site) / "sitecustomize.py"
    if not shim.is_file() or shim.read_text() != TORCH_SHIM:
        shim.write_text(TORCH_SHIM)
    return python


def prepare_data(multi30k: Path) -> tuple[Path, Path, Path]:
    """Plain text of each split, a joint 8k unigram SentencePiece model and JoeyNMT's vocabulary file."""
    data = BENCH / "multi30k-ende"
    data.mkdir(parents=True, exist_ok=True)
    for name, prefix in SPLITS.items():
        for lang in ("en", "de"):
            target = data / f"{name}.{lang}"
            if not target.is_file():
                with gzip.open(multi30k / f"{prefix}.{lang}.gz", "rt", encoding="utf-8") as handle:
                    target.write_text(handle.read(), encoding="utf-8")
    spm_model = data / "spm_joint8k.model"
    if not spm_model.is_file():
        import sentencepiece as spm

        # The same settings as mt's tokenizer (mt/data/tokenizer.py): pad 0, unk 1, bos 2, eos 3.
        spm.SentencePieceTrainer.train(
            input=[str(data / "train.en"), str(data / "train.de")], model_prefix=str(data / "spm_joint8k"),
            vocab_size=8000, model_type="unigram", character_coverage=1.0, pad_id=0, unk_id=1, bos_id=2,
            eos_id=3, input_sentence_size=1_000_000, shuffle_input_sentence=True, num_threads=2, minloglevel=2)
    vocab = data / "joint_vocab.txt"
    if not vocab.is_file():
        import sentencepiece as spm

        proc = spm.SentencePieceProcessor(model_file=str(spm_model))
        pieces = [proc.id_to_piece(i) for i in range(proc.get_piece_size()) if not proc.is_control(i)
                  and not proc.is_unknown(i)]
        vocab.write_text("".join(p + "\n" for p in pieces), encoding="utf-8")
    return data, spm_model, vocab


def joeynmt_config(model: str, data: Path, spm_model: Path, vocab: Path, out: Path, *, dev: Path | None = None,
                   beam: int = 5, name: str = "", test_ckpt: Path | None = None, **training) -> Path:
    """A JoeyNMT config for ``model``; ``dev``: another dev prefix; ``test_ckpt``: the checkpoint its
    test mode loads; ``training``: more training keys."""
    side = lambda lang: {
        "lang": lang, "level": "bpe", "lowercase": False, "max_length": 128, "voc_file": str(vocab),
        "tokenizer_type": "sentencepiece", "tokenizer_cfg": {"model_file": str(spm_model)}}
    if model == "transformer":
        layer = {"type": "transformer", "num_layers": 3, "num_heads": 4, "hidden_size": 256, "ff_size": 1024,
                 "dropout": 0.1, "layer_norm": "pre", "embeddings": {"embedding_dim": 256, "scale": True}}
        encoder, decoder = dict(layer), dict(layer)
        tied = {"tied_embeddings": True, "tied_softmax": True}
    else:
        encoder = {"type": "recurrent", "rnn_type": "gru", "hidden_size": 256, "bidirectional": True,
                   "num_layers": 1, "dropout": 0.1, "embeddings": {"embedding_dim": 128}}
        decoder = {"type": "recurrent", "rnn_type": "gru", "hidden_size": 256, "num_layers": 1, "dropout": 0.1,
                   "attention": "bahdanau", "input_feeding": False, "init_hidden": "bridge",
                   "embeddings": {"embedding_dim": 128}}
        tied = {}
    cfg = {
        "name": f"bench_{model}",
        "joeynmt_version": "2.3.0",
        "data": {"train": str(data / "train"), "dev": str(dev or data / "dev"), "test": str(data / "test"),
                 "dataset_type": "plain", "src": side("en"), "trg": side("de")},
        "training": {
            "model_dir": str(out), "overwrite": True, "optimizer": "adam",
            # mt's presets: the Transformer warms up over 100 updates to 1e-3 (JoeyNMT then decays it
            # by inverse square root; its plateau schedule fails on torch 2.13), the RNN keeps 2e-3
            # (JoeyNMT 2.3 refuses a config without a scheduler: exponential decay by 1.0 is constant).
            **({"learning_rate": 0.001, "scheduling": "warmupinversesquareroot", "learning_rate_warmup": 100}
               if model == "transformer" else {"learning_rate": 0.002, "scheduling": "exponential",
                                               "decrease_factor": 1.0}),
            "batch_size": 4096, "batch_type": "token", "epochs": 100, "logging_freq": 2,
            "validation_freq": 10 ** 9, "use_cuda": False, "fp16": False, "random_seed": 1, "shuffle": True,
            "label_smoothing": 0.1 if model == "transformer" else 0.0, "num_workers": 0, "print_valid_sents": [],
            "eval_metrics": ["bleu"], "keep_best_ckpts": 1, **training,
        },
        "testing": {"beam_size": beam, "beam_alpha": 1.0, "batch_size": 4096, "batch_type": "token",
                    "eval_metrics": ["bleu"], "sacrebleu_cfg": {"tokenize": "13a"},
                    **({"load_model": str(test_ckpt)} if test_ckpt else {})},
        "model": {"initializer": "xavier_uniform", "encoder": encoder, "decoder": decoder, **tied},
    }
    import yaml  # in mt's environment through hydra/omegaconf

    path = out.parent / f"joeynmt_{name or model}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_timed(cmd: list[str], env: dict, seconds: float, log: Path, cwd: Path) -> tuple[str, float]:
    """Runs ``cmd`` for at most ``seconds`` after it starts training (or to its end);
    returns its output and its peak resident memory in MiB (VmHWM, polled)."""
    peak_kib = 0
    with log.open("w") as handle:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
        start = time.time()
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                peak_kib = max(peak_kib, int(re.search(r"VmHWM:\s+(\d+)", status).group(1)))
            except (OSError, AttributeError):
                pass
            if time.time() - start > seconds:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
            time.sleep(0.5)
        proc.wait()
    return log.read_text(errors="replace"), peak_kib / 1024


JOEY_RATE = re.compile(r"Tokens per Sec:\s+([\d.]+)")
MT_RATE = re.compile(r"\bepoch \d+\s+batch \d+/\d+.*?([\d.]+) tok/s")
MT_PARAMS = re.compile(r"model \S+: ([\d,]+) parameters")
JOEY_PARAMS = re.compile(r"Total params: ([\d,]+)")


def median_after_warmup(rates: list[float], warmup: int) -> float | None:
    kept = rates[warmup:] or rates[-1:]
    return statistics.median(kept) if kept else None


# -- translation speed and quality at a budget ------------------------------------------------

JOEY_GENERATION = re.compile(r"Generation took ([\d.]+)\[sec\]")
MT_STOP_STEP = re.compile(r"reached at step (\d+)")
MT_LAST_STEP = re.compile(r"\bstep (\d+)\b")
JOEY_STEP = re.compile(r"Step:\s+(\d+)")
WARMUP_LINES = 50


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def score(hyp_file: Path, ref_file: Path) -> dict:
    import sacrebleu

    hyps, refs = read_lines(hyp_file), read_lines(ref_file)
    if len(hyps) != len(refs):
        raise SystemExit(f"{hyp_file}: {len(hyps)} lines for {len(refs)} references")
    return {"bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
            "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2)}


def mt_translate_worker(model_dir: str, src: str, beam: int, threads: int, out: str) -> None:
    """Body of the mt translation subprocess: load, warm up on 50 lines, time one pass over ``src``."""
    import torch

    from mt.api import open_translator

    torch.set_num_threads(threads)
    lines = read_lines(Path(src))
    translator = open_translator(model_dir)
    max_tokens = 4096 * beam  # 4,096 source tokens per batch whatever the beam, as JoeyNMT batches
    translator.translate(lines[:WARMUP_LINES], beam=beam, max_tokens=max_tokens)
    start = time.perf_counter()
    hyps = translator.translate(lines, beam=beam, max_tokens=max_tokens)
    seconds = time.perf_counter() - start
    Path(out).write_text("".join(h.text + "\n" for h in hyps), encoding="utf-8")
    print(json.dumps({"seconds": seconds}))


def mt_translate(model_dir: Path, src: Path, beam: int, threads: int, out: Path, env: dict) -> float:
    cmd = [str(REPO / ".venv" / "bin" / "python"), __file__, "--mt-translate-worker", str(model_dir), str(src),
           str(beam), str(threads), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"mt translation failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]


def joey_translate(joey_python: Path, cfg: Path, out: Path, env: dict) -> float:
    """Runs JoeyNMT's test mode (its dev set: 20 warm-up lines, then test 2016); returns the
    seconds of its "Generation took" line for the test set; the hypotheses go to ``out``."""
    proc = subprocess.run([str(joey_python), "-m", "joeynmt", "test", str(cfg), "--output-path", str(out)],
                          env=env, capture_output=True, text=True, check=False)
    times = [float(x) for x in JOEY_GENERATION.findall(proc.stdout + proc.stderr)]
    if proc.returncode or len(times) != 2:
        raise SystemExit(f"JoeyNMT test failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    shutil.copyfile(f"{out}.test", out)
    return times[1]


def sinusoids(length: int, dim: int):
    """Vaswani et al.'s position table, sin and cos interleaved (even columns sin, odd cos): what
    JoeyNMT's PositionalEncoding holds, and mt's Transformer too (checked against its own table)."""
    import math

    import torch

    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


def mt_to_joeynmt(model_dir: Path, out: Path) -> tuple[Path, Path, Path]:
    """Converts an mt Transformer (pre-norm, tied embeddings, one joint vocabulary) into a
    JoeyNMT 2.3 checkpoint; returns (checkpoint, vocabulary file, SentencePiece model)."""
    import sentencepiece as spm
    import torch

    from mt.api import load_model_dir

    loaded = load_model_dir(model_dir)
    cfg = loaded.config.model
    if cfg.arch.value != "transformer" or not cfg.share_embeddings or not cfg.tie_output \
            or cfg.positions.value != "sinusoidal":
        raise SystemExit(f"{model_dir}: only a Transformer with shared, tied embeddings and sinusoidal "
                         "positions converts to JoeyNMT")
    if (model_dir / "src.model").read_bytes() != (model_dir / "tgt.model").read_bytes():
        raise SystemExit(f"{model_dir}: the conversion needs one joint SentencePiece model")
    out.mkdir(parents=True, exist_ok=True)
    sp_model = out / "spm.model"
    shutil.copyfile(model_dir / "src.model", sp_model)
    proc = spm.SentencePieceProcessor(model_file=str(sp_model))
    vocab = out / "vocab.txt"
    # JoeyNMT puts <unk> <pad> <s> </s> at 0-3 and the file's pieces after them, so mt's id k >= 4
    # keeps its index and only pad (mt 0) and unk (mt 1) swap.
    vocab.write_text("".join(proc.id_to_piece(i) + "\n" for i in range(4, proc.get_piece_size())), encoding="utf-8")
    order = torch.tensor([1, 0, 2, 3, *range(4, proc.get_piece_size())])
    sd = {k: v.float() for k, v in loaded.model.state_dict().items()}
    dim = cfg.hidden_dim
    joey: dict[str, torch.Tensor] = {}
    emb = sd["src_embed.tokens.weight"][order]
    joey["src_embed.lut.weight"] = emb
    joey["trg_embed.lut.weight"] = emb
    joey["decoder.output_layer.weight"] = emb
    pe = sinusoids(5000, dim)
    own = loaded.model.src_embed.table  # the model's own table (model.max_positions rows)
    if not torch.allclose(pe[: len(own)], own, atol=1e-6):
        raise SystemExit(f"{model_dir}: its position table is not the interleaved sin/cos JoeyNMT computes")
    pe = pe.unsqueeze(0)
    joey["encoder.pe.pe"], joey["decoder.pe.pe"] = pe, pe.clone()

    def attention(src: str, dst: str) -> None:
        for kind in ("weight", "bias"):
            k, v = sd[f"{src}.key_value.{kind}"].chunk(2, dim=0)
            joey[f"{dst}.k_layer.{kind}"], joey[f"{dst}.v_layer.{kind}"] = k, v
            joey[f"{dst}.q_layer.{kind}"] = sd[f"{src}.query.{kind}"]
            joey[f"{dst}.output_layer.{kind}"] = sd[f"{src}.out.{kind}"]

    def copy(src: str, dst: str) -> None:
        for kind in ("weight", "bias"):
            joey[f"{dst}.{kind}"] = sd[f"{src}.{kind}"]

    for i in range(cfg.enc_layers):
        copy(f"encoder.{i}.norm1", f"encoder.layers.{i}.layer_norm")
        attention(f"encoder.{i}.attn", f"encoder.layers.{i}.src_src_att")
        copy(f"encoder.{i}.norm2", f"encoder.layers.{i}.feed_forward.layer_norm")
        copy(f"encoder.{i}.ff.0", f"encoder.layers.{i}.feed_forward.pwff_layer.0")
        copy(f"encoder.{i}.ff.3", f"encoder.layers.{i}.feed_forward.pwff_layer.3")
    for i in range(cfg.dec_layers):
        copy(f"decoder.{i}.norm1", f"decoder.layers.{i}.x_layer_norm")
        attention(f"decoder.{i}.self_attn", f"decoder.layers.{i}.trg_trg_att")
        copy(f"decoder.{i}.norm2", f"decoder.layers.{i}.dec_layer_norm")
        attention(f"decoder.{i}.cross_attn", f"decoder.layers.{i}.src_trg_att")
        copy(f"decoder.{i}.norm3", f"decoder.layers.{i}.feed_forward.layer_norm")
        copy(f"decoder.{i}.ff.0", f"decoder.layers.{i}.feed_forward.pwff_layer.0")
        copy(f"decoder.{i}.ff.3", f"decoder.layers.{i}.feed_forward.pwff_layer.3")
    copy("encoder_norm", "encoder.layer_norm")
    copy("decoder_norm", "decoder.layer_norm")
    ckpt = out / "converted.ckpt"
    torch.save({"model_state": joey}, ckpt)
    return ckpt, vocab, sp_model


def translation_speed(mt_model: Path, joey_python: Path, joey_cfg: dict[int, Path], data: Path, threads: int,
                      rounds: int, env: dict, work: Path) -> dict:
    """Alternating rounds of mt and JoeyNMT translating test 2016, greedy and beam 5."""
    src, ref = data / "test.en", data / "test.de"
    n = len(read_lines(src))
    result: dict = {}
    for beam in (1, 5):
        runs: dict[str, list[float]] = {"mt": [], "joeynmt": []}
        scores = {}
        for round_no in range(rounds):
            for system in ("mt", "joeynmt"):
                out = work / f"{system}_beam{beam}_{round_no}.de"
                if system == "mt":
                    seconds = mt_translate(mt_model, src, beam, threads, out, env)
                else:
                    seconds = joey_translate(joey_python, joey_cfg[beam], out, env)
                runs[system].append(seconds)
                scores[system] = score(out, ref)
                print(f"   beam {beam} round {round_no + 1}: {system} {seconds:.1f} s, {n / seconds:.1f} sent/s, "
                      f"BLEU {scores[system]['bleu']}", flush=True)
        row = {}
        for system, times in runs.items():
            row[system] = {"sentences_per_s": round(n / statistics.median(times), 2),
                           "seconds": [round(t, 2) for t in times], **scores[system]}
        row["ratio"] = round(row["mt"]["sentences_per_s"] / row["joeynmt"]["sentences_per_s"], 2)
        result[f"beam{beam}"] = row
        print(f"== translation beam {beam}: mt {row['mt']['sentences_per_s']} sent/s (BLEU {row['mt']['bleu']}), "
              f"JoeyNMT {row['joeynmt']['sentences_per_s']} sent/s (BLEU {row['joeynmt']['bleu']}): "
              f"{row['ratio']}x", flush=True)
    return result


def test_subset(data: Path, lines: int | None, work: Path) -> Path:
    """A data folder whose test set is the first ``lines`` of test 2016 (all of it with None):
    JoeyNMT's Transformer decoding is slow enough on 2 cores that repeated rounds of the whole
    set would take hours."""
    if not lines:
        return data
    subset = work / "data"
    subset.mkdir(parents=True, exist_ok=True)
    for lang in ("en", "de"):
        (subset / f"train.{lang}").unlink(missing_ok=True)
        (subset / f"train.{lang}").symlink_to(data / f"train.{lang}")
        (subset / f"test.{lang}").write_text("".join(l + "\n" for l in read_lines(data / f"test.{lang}")[:lines]),
                                            encoding="utf-8")
    return subset


def warmup_dev(data: Path) -> Path:
    """JoeyNMT's test mode decodes its dev set first: 20 lines of test 2016 make that a warm-up."""
    prefix = data / "warmup"
    for lang in ("en", "de"):
        (data / f"warmup.{lang}").write_text("".join(l + "\n" for l in read_lines(data / f"test.{lang}")[:20]),
                                             encoding="utf-8")
    return prefix


def joey_test_configs(model: str, data: Path, spm_model: Path, vocab: Path, model_dir: Path, ckpt: Path) -> dict:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "keep").write_text("")  # JoeyNMT's test mode wants a non-empty model_dir
    return {beam: joeynmt_config(model, data, spm_model, vocab, model_dir, dev=warmup_dev(data), beam=beam,
                                 name=f"{model}_test_beam{beam}", test_ckpt=ckpt)
            for beam in (1, 5)}


def run_joey_training(cmd: list[str], env: dict, log: Path, seconds: float | None) -> str:
    """Trains JoeyNMT; with ``seconds``, interrupts it (SIGINT: it saves its weights) that many
    seconds after its first update is logged."""
    with log.open("w") as handle:
        # A job started in the background by a non-interactive shell inherits SIGINT ignored,
        # and Python then installs no KeyboardInterrupt handler: restore the default first.
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509 (no threads here)
        started = None
        while proc.poll() is None:
            time.sleep(0.5)
            if seconds is None:
                continue
            if started is None and "Tokens per Sec" in log.read_text(errors="replace"):
                started = time.time()
            if started is not None and time.time() - started > seconds:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=300)  # it saves its checkpoint first
                except subprocess.TimeoutExpired:
                    proc.kill()
                    raise SystemExit(f"JoeyNMT did not stop on SIGINT; see {log}") from None
        proc.wait()
    return log.read_text(errors="replace")


def quality_at_budget(model: str, seconds: float, ns, joey_python: Path, data: Path, spm_model: Path, vocab: Path,
                      env: dict) -> dict:
    work = BENCH / "quality" / model
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    src, ref = data / "test.en", data / "test.de"
    result: dict = {"seconds": seconds}
    # mt: the run's own time box; its validations count in it.
    run_dir = work / "mt_run"
    cmd = [str(REPO / ".venv" / "bin" / "mt"), "train", "data=multi30k", f"data.dir={ns.multi30k}",
           "data.tokenizer.joint=true", "data.tokenizer.src_vocab_size=8000", *MT_MODELS[model],
           "train.max_tokens=4096", f"train.threads={ns.threads}", f"train.max_seconds={seconds}", "train.epochs=1000",
           "train.log_seconds=60", f"hydra.run.dir={run_dir}", f"cache_dir={BENCH / 'cache'}"]
    print(f"== quality {model}: mt trains {seconds:.0f} s", flush=True)
    text, peak = run_timed(cmd, env, seconds + 1200, work / "mt_train.log", REPO)
    found = MT_STOP_STEP.search(text) or (MT_LAST_STEP.findall(text) or [None])[-1]
    mt_steps = int(found.group(1) if isinstance(found, re.Match) else found)
    mt_seconds = mt_translate(run_dir / "model", src, 5, ns.threads, work / "mt_beam5.de", env)
    result["mt"] = {"updates": mt_steps, **score(work / "mt_beam5.de", ref), "peak_rss_mib": round(peak),
                    "beam5_seconds": round(mt_seconds, 1)}
    print(f"   mt: {result['mt']}", flush=True)
    # JoeyNMT: interrupted after the same time, no validation.
    joey_dir = work / "joey_model"
    cfg = joeynmt_config(model, data, spm_model, vocab, joey_dir, name=f"{model}_quality")
    print(f"== quality {model}: JoeyNMT trains {seconds:.0f} s", flush=True)
    text = run_joey_training([str(joey_python), "-m", "joeynmt", "train", str(cfg), "--skip-test"], env,
                             work / "joey_train.log", seconds)
    joey_steps = int(JOEY_STEP.findall(text)[-1])
    ckpt = joey_dir / "latest.ckpt"
    tests = joey_test_configs(model, data, spm_model, vocab, work / "joey_test", ckpt)
    joey_seconds = joey_translate(joey_python, tests[5], work / "joey_beam5.de", env)
    result["joeynmt"] = {"updates": joey_steps, **score(work / "joey_beam5.de", ref),
                         "beam5_seconds": round(joey_seconds, 1)}
    print(f"   JoeyNMT: {result['joeynmt']}", flush=True)
    if model == "rnn":
        # No converter for the RNN: JoeyNMT goes on to mt's number of updates, so both have seen
        # the same batches and translate at about the same BLEU.
        resumed_dir = work / "joey_resumed"
        cfg = joeynmt_config(model, data, spm_model, vocab, resumed_dir, name=f"{model}_resumed",
                             load_model=str(ckpt), updates=mt_steps)
        print(f"== {model}: JoeyNMT resumes to {mt_steps} updates", flush=True)
        run_joey_training([str(joey_python), "-m", "joeynmt", "train", str(cfg), "--skip-test"], env,
                          work / "joey_resume.log", None)
        subset = test_subset(data, ns.translate_lines, work / "speed")
        tests = joey_test_configs(model, subset, spm_model, vocab, work / "joey_test_resumed",
                                  resumed_dir / "latest.ckpt")
        result["translation"] = {"test_lines": len(read_lines(subset / "test.en")),
                                 **translation_speed(run_dir / "model", joey_python, tests, subset, ns.threads,
                                                     ns.rounds, env, work)}
    return result


# -- validation BLEU against the wall clock ---------------------------------------------------

JOEY_RECIPE = "configs/iwslt14_deen_bpe.yaml of JoeyNMT v2.3 (github.com/joeynmt/joeynmt/blob/v2.3/configs)"
VALID_LINES = 500  # mt validates on the first 500 sentences of the validation set (train.valid_max_sentences)
JOEY_VALID_LINE = re.compile(r"Steps: (\d+)\t(.*?)\tLR: ([\d.e+-]+)")
# mt's side of the clock: the preset as a user runs it, from a cold cache (its tokenizer training counts)
MT_CLOCK = ["data=multi30k", "model=transformer", "train.epochs=1000"]


def joeynmt_recipe_config(data: Path, spm_model: Path, vocab: Path, out: Path, dev: Path, valid_every: int) -> Path:
    """JoeyNMT's own Transformer recipe for a corpus the size of IWSLT14 (160k pairs; the nearest it
    publishes to Multi30k's 29k): 6+6 pre-norm layers of d 256, 4 heads, ff 1024, dropout 0.3, tied
    embeddings and softmax, AdamW 3e-4 with its plateau schedule (patience 5, factor 0.7), 4,096-token
    batches, label smoothing 0.1, early stopping on BLEU. What differs from the file: the text (Multi30k
    en-de, cased, the joint 8k SentencePiece model both systems use, in place of 32k BPE merges on
    lower-cased IWSLT), validation every ``valid_every`` updates on ``dev`` (the recipe's 1,000 updates
    are more than 2 cores make in an hour), CPU and fp32."""
    side = lambda lang: {
        "lang": lang, "max_length": 62, "lowercase": False, "normalize": False, "level": "bpe", "voc_min_freq": 1,
        "voc_file": str(vocab), "tokenizer_type": "sentencepiece", "tokenizer_cfg": {"model_file": str(spm_model)}}
    stack = {"type": "transformer", "num_layers": 6, "num_heads": 4, "hidden_size": 256, "ff_size": 1024,
             "dropout": 0.3, "layer_norm": "pre", "activation": "relu",
             "embeddings": {"embedding_dim": 256, "scale": True, "dropout": 0.0}}
    cfg = {
        "name": "transformer_iwslt14_deen_bpe_on_multi30k", "joeynmt_version": "2.3.0", "model_dir": str(out),
        "use_cuda": False, "fp16": False, "random_seed": 42,
        "data": {"train": str(data / "train"), "dev": str(dev), "test": str(data / "test"), "dataset_type": "plain",
                 "src": side("en"), "trg": side("de")},
        "testing": {"n_best": 1, "beam_size": 5, "beam_alpha": 1.0, "batch_size": 1024, "batch_type": "token",
                    "max_output_length": 100, "eval_metrics": ["bleu"], "sacrebleu_cfg": {"tokenize": "13a"}},
        "training": {
            "model_dir": str(out), "overwrite": True, "optimizer": "adamw", "normalization": "tokens",
            "adam_betas": [0.9, 0.999], "scheduling": "plateau", "patience": 5, "decrease_factor": 0.7,
            "loss": "crossentropy", "learning_rate": 0.0003, "learning_rate_min": 1e-8, "weight_decay": 0.0,
            "label_smoothing": 0.1, "batch_size": 4096, "batch_type": "token", "early_stopping_metric": "bleu",
            "epochs": 100, "validation_freq": valid_every,
            # JoeyNMT wants a logging interval below the validation one that divides it
            "logging_freq": next(d for d in range(min(50, valid_every - 1), 0, -1) if valid_every % d == 0), "shuffle": True,
            "print_valid_sents": [], "keep_best_ckpts": 1, "num_workers": 0},
        "model": {"initializer": "xavier_uniform", "embed_initializer": "xavier_uniform", "embed_init_gain": 1.0,
                  "init_gain": 1.0, "bias_initializer": "zeros", "tied_embeddings": True, "tied_softmax": True,
                  "encoder": dict(stack), "decoder": dict(stack)},
    }
    import yaml

    path = out.parent / "joeynmt_recipe.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def dev_head(data: Path, lines: int) -> Path:
    """The first ``lines`` sentences of the validation set: what mt decodes at each validation."""
    for lang in ("en", "de"):
        (data / f"dev{lines}.{lang}").write_text(
            "".join(line + "\n" for line in read_lines(data / f"dev.{lang}")[:lines]), encoding="utf-8")
    return data / f"dev{lines}"


def joey_clock(cmd: list[str], env: dict, seconds: float, log: Path, validations: Path) -> tuple[list[dict], float]:
    """Runs JoeyNMT for ``seconds`` of wall clock from its start, stamping each validation (a new
    line of its validations.txt) with the clock and with the seconds it took (from its
    "Predicting" line in the log to that line); returns the validations and the peak RSS in MiB."""
    rows: list[dict] = []
    peak_kib = 0
    with log.open("w") as handle:
        start = time.time()
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
        began: float | None = None
        predicting = consumed = 0

        def read_validations(now: float) -> None:
            nonlocal consumed
            text = validations.read_text() if validations.is_file() else ""
            complete = text.splitlines()[: text.count("\n")]  # a line still being written waits
            for line in complete[consumed:]:
                consumed += 1
                found = JOEY_VALID_LINE.search(line)
                if not found:
                    continue
                scores = dict(part.split(": ") for part in found.group(2).split("\t"))
                rows.append({"step": int(found.group(1)), "bleu": round(float(scores["bleu"]), 2),
                             "loss": round(float(scores.get("loss", "nan")), 4), "lr": float(found.group(3)),
                             "wall": round(now - start, 1),
                             "valid_seconds": round(now - began, 1) if began is not None else None})
                print(f"   JoeyNMT step {rows[-1]['step']}: BLEU {rows[-1]['bleu']} at {rows[-1]['wall']:.0f} s "
                      f"(validation {rows[-1]['valid_seconds']} s)", flush=True)

        while proc.poll() is None:
            time.sleep(0.5)
            now = time.time()
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                peak_kib = max(peak_kib, int(re.search(r"VmHWM:\s+(\d+)", status).group(1)))
            except (OSError, AttributeError):
                pass
            seen = log.read_text(errors="replace").count("Predicting ")
            if seen > predicting:
                predicting, began = seen, now
            read_validations(now)
            if now - start > seconds:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
        proc.wait()
        if time.time() - start <= seconds + 1:  # it ended by itself: its last validation may be unread
            read_validations(time.time())
    if not rows:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"JoeyNMT validated nothing in {seconds:.0f} s; its log {log} ends: {tail[0]}")
    return rows, peak_kib / 1024


def mt_validations(run_dir: Path, seconds: float) -> list[dict]:
    """An mt run's validations (metrics.jsonl) in its first ``seconds``: BLEU of the first 500
    validation sentences, greedy, against the seconds since ``mt train`` began; the averaged
    model's row left out."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if any("wall" not in r for r in rows):
        raise SystemExit(f"{run_dir}/metrics.jsonl has no wall clock (rows written before mt recorded 'wall'): "
                         "train it again")
    return [{"step": r["step"], "bleu": r["valid_bleu"], "loss": r["valid_loss"], "lr": r["lr"], "wall": r["wall"],
             "precision": r.get("precision", "")} for r in rows if not r.get("averaged") and r["wall"] <= seconds]


def mt_budget(run_dir: Path) -> float:
    """The ``train.max_seconds`` an mt run trained for (its model's config.yaml), 0 without one."""
    found = re.search(r"^\s*max_seconds:\s*([\d.]+)", (run_dir / "model" / "config.yaml").read_text(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def first_reaching(rows: list[dict], bleu: float, clock: str = "wall") -> float | None:
    return next((r[clock] for r in rows if r["bleu"] >= bleu), None)


def summarize_clock(result: dict) -> None:
    """The time each system takes to JoeyNMT's best validation BLEU, and their ratio; where mt's
    run is shorter than JoeyNMT's and never reached it, the ratio is left out and said."""
    mt_rows, joey_rows = result["mt"]["validations"], result["joeynmt"]["validations"]
    target = max(r["bleu"] for r in joey_rows)
    times = {"joeynmt": first_reaching(joey_rows, target),
             "joeynmt_training_only": first_reaching(joey_rows, target, "wall_training_only"),
             "mt": first_reaching(mt_rows, target)}
    result["target_bleu"], result["time_to_target_s"] = target, times
    result["mt_best_bleu"] = max(r["bleu"] for r in mt_rows)
    result.pop("ratio", None), result.pop("ratio_training_only", None)
    if times["mt"]:
        result["ratio"] = round(times["joeynmt"] / times["mt"], 2)
        result["ratio_training_only"] = round(times["joeynmt_training_only"] / times["mt"], 2)
    print(f"== clock: JoeyNMT's best validation BLEU {target} at {times['joeynmt']:.0f} s "
          f"({times['joeynmt_training_only']:.0f} s without its validations); mt "
          + (f"reached it at {times['mt']:.0f} s: {result['ratio']}x ({result['ratio_training_only']}x)"
             if times["mt"] else f"never did in its run (best {result['mt_best_bleu']})"), flush=True)


def clock_comparison(seconds: float, ns, joey_python: Path, data: Path, spm_model: Path, vocab: Path,
                     env: dict) -> dict:
    """Validation BLEU against the wall clock: mt's preset (or the run ``--mt-run`` names), then
    JoeyNMT's own recipe for ``seconds``; the time each takes to JoeyNMT's best validation BLEU."""
    work = BENCH / "clock"
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"seconds": seconds, "valid_sentences": VALID_LINES}
    if ns.mt_run:
        run_dir = Path(ns.mt_run)
        overrides = run_dir / ".hydra" / "overrides.yaml"
        result["mt"] = {"run": str(run_dir), "max_seconds": mt_budget(run_dir),
                        "overrides": overrides.read_text() if overrides.is_file() else None}
    else:
        run_dir = work / "mt_run"
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(work / "mt_cache", ignore_errors=True)
        cmd = [str(REPO / ".venv" / "bin" / "mt"), "train", *MT_CLOCK, f"data.dir={ns.multi30k}",
               f"train.threads={ns.threads}", f"train.max_seconds={seconds}", f"hydra.run.dir={run_dir}",
               f"cache_dir={work / 'mt_cache'}"]
        print(f"== clock: mt trains {seconds:.0f} s", flush=True)
        _, peak = run_timed(cmd, env, seconds + 600, work / "mt_train.log", REPO)
        result["mt"] = {"command": " ".join(cmd[1:]), "max_seconds": seconds, "peak_rss_mib": round(peak)}
    # mt validates once more after its budget; JoeyNMT's rows stop at it: the same window for both
    result["mt"]["validations"] = mt_validations(run_dir, seconds)
    if not result["mt"]["validations"]:
        raise SystemExit(f"{run_dir}: no validation within {seconds:.0f} s")
    joey_dir = work / "joey_model"
    shutil.rmtree(joey_dir, ignore_errors=True)
    joey_dir.mkdir(parents=True)
    cfg = joeynmt_recipe_config(data, spm_model, vocab, joey_dir, dev_head(data, VALID_LINES), ns.valid_every)
    print(f"== clock: JoeyNMT trains {seconds:.0f} s ({JOEY_RECIPE}, validation every {ns.valid_every} updates)",
          flush=True)
    rows, peak = joey_clock([str(joey_python), "-m", "joeynmt", "train", str(cfg), "--skip-test"], env, seconds,
                            work / "joey_train.log", joey_dir / "validations.txt")
    spent = 0.0
    for row in rows:  # JoeyNMT's clock without its validations, the kinder reading of it
        spent += row["valid_seconds"] or 0.0
        row["wall_training_only"] = round(row["wall"] - spent, 1)
    rates = [float(x) for x in JOEY_RATE.findall((work / "joey_train.log").read_text(errors="replace"))]
    result["joeynmt"] = {"recipe": JOEY_RECIPE, "config": str(cfg), "peak_rss_mib": round(peak),
                         "tokens_per_s_median": statistics.median(rates) if rates else None, "validations": rows}
    summarize_clock(result)
    return result


def plot_clock(result: dict, machine_name: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    mt_rows, joey_rows = result["mt"]["validations"], result["joeynmt"]["validations"]
    ax.plot([r["wall"] / 60 for r in mt_rows], [r["bleu"] for r in mt_rows], "o-", ms=3,
            label=f"mt ({mt_rows[0]['precision']})")
    ax.plot([r["wall"] / 60 for r in joey_rows], [r["bleu"] for r in joey_rows], "s-", ms=4,
            label="JoeyNMT 2.3 (fp32), its IWSLT14 Transformer recipe")
    ax.plot([r["wall_training_only"] / 60 for r in joey_rows], [r["bleu"] for r in joey_rows], "s--", ms=3,
            alpha=0.5, label="JoeyNMT, its validations' time left out")
    target, times = result["target_bleu"], result["time_to_target_s"]
    ax.axhline(target, color="grey", lw=0.8, ls=":")
    if times["mt"]:
        ax.annotate(f"JoeyNMT's best {target}: mt at {times['mt'] / 60:.1f} min, JoeyNMT at "
                    f"{times['joeynmt'] / 60:.0f} min ({result['ratio']}x)", (times["mt"] / 60, target),
                    xytext=(0.2, 0.62), textcoords="axes fraction", arrowprops={"arrowstyle": "->", "lw": 0.8},
                    fontsize=8)
    ax.set_xlabel("wall clock since the command started (minutes)")
    ax.set_ylabel(f"validation BLEU ({result['valid_sentences']} sentences, greedy)")
    ax.set_title(f"Multi30k en-de, {machine_name}", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def transformer_translation(model_dir: Path, ns, joey_python: Path, data: Path, env: dict) -> dict:
    work = BENCH / "translate"
    shutil.rmtree(work, ignore_errors=True)
    ckpt, vocab, sp_model = mt_to_joeynmt(model_dir, work / "converted")
    data = test_subset(data, ns.translate_lines, work)
    tests = joey_test_configs("transformer", data, sp_model, vocab, work / "joey_test", ckpt)
    return {"model_dir": str(model_dir), "test_lines": len(read_lines(data / "test.en")),
            "translation": translation_speed(model_dir, joey_python, tests, data, ns.threads, ns.rounds, env, work)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--multi30k", default=str(REPO.parent / "shared" / "data" / "multi30k"))
    parser.add_argument("--models", nargs="+", default=["transformer", "rnn"], choices=list(MT_MODELS))
    parser.add_argument("--seconds", type=float, default=150, help="training seconds of each run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each system and model, alternating")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup-lines", type=int, default=2, help="throughput lines dropped at each run's start")
    parser.add_argument("--jemalloc", action="store_true", help="preload libjemalloc for both systems")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--translate", metavar="MODEL_DIR",
                        help="translation speed of this mt Transformer and its JoeyNMT conversion (no training runs)")
    parser.add_argument("--translate-lines", type=int, default=0,
                        help="time translation on the first N lines of test 2016 (default: all)")
    parser.add_argument("--quality-seconds", type=float, default=0,
                        help="quality at a budget: train each system this long, then score (no speed runs)")
    parser.add_argument("--clock", type=float, default=0, metavar="SECONDS",
                        help="validation BLEU against the wall clock: mt's preset, then JoeyNMT's own recipe, "
                             "each this long (no speed runs)")
    parser.add_argument("--mt-run", help="with --clock: take this mt run's validations instead of training mt")
    parser.add_argument("--valid-every", type=int, default=150, help="with --clock: JoeyNMT validates this often")
    parser.add_argument("--plot", help="with --clock: draw both curves here (PNG)")
    parser.add_argument("--cpu-label", help="with --plot: the CPU as the title names it (default: its model name)")
    if len(sys.argv) > 1 and sys.argv[1] == "--replot":  # --replot RECORD.json OUT.png [CPU_LABEL]: a --clock record
        # summed up again (the record rewritten) and drawn
        record = json.loads(Path(sys.argv[2]).read_text())
        if "run" in record["clock"]["mt"]:
            record["clock"]["mt"].setdefault("max_seconds", mt_budget(Path(record["clock"]["mt"]["run"])))
        summarize_clock(record["clock"])
        Path(sys.argv[2]).write_text(json.dumps(record, indent=2))
        machine_name = sys.argv[4] if len(sys.argv) > 4 else record["machine"]["cpu"]
        plot_clock(record["clock"], machine_name, Path(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--mt-translate-worker":
        model_dir, src, beam, threads, out = sys.argv[2:7]
        mt_translate_worker(model_dir, src, int(beam), int(threads), out)
        return
    ns = parser.parse_args()
    if ns.valid_every < 2:
        parser.error("--valid-every must be at least 2 (JoeyNMT logs more often than it validates)")
    joey_python = setup_joeynmt()
    data, spm_model, vocab = prepare_data(Path(ns.multi30k))
    env = dict(os.environ, OMP_NUM_THREADS=str(ns.threads), MKL_NUM_THREADS=str(ns.threads),
               PYTHONWARNINGS="ignore", HYDRA_FULL_ERROR="1")
    if ns.jemalloc:
        if not Path(JEMALLOC).is_file():
            sys.exit(f"{JEMALLOC} not found: apt-get install libjemalloc2")
        env["LD_PRELOAD"] = JEMALLOC
    from mt.api import machine

    common = {"threads": ns.threads, "rounds": ns.rounds, "allocator": "jemalloc" if ns.jemalloc else "glibc",
              "machine": machine(), "date": time.strftime("%Y-%m-%d"), "versions": versions(joey_python)}
    if ns.clock:
        report = {"clock": clock_comparison(ns.clock, ns, joey_python, data, spm_model, vocab, env)}
        if ns.plot:
            plot_clock(report["clock"], ns.cpu_label or f"{common['machine'].get('cpu', 'CPU')}, "
                       f"{common['machine'].get('torch_cpu_capability')}, {ns.threads} threads", Path(ns.plot))
        if ns.json:
            Path(ns.json).write_text(json.dumps({**report, **common}, indent=2))
        return
    if ns.translate or ns.quality_seconds:
        report: dict = {}
        if ns.translate:
            report["transformer_translation"] = transformer_translation(Path(ns.translate), ns, joey_python, data, env)
        if ns.quality_seconds:
            report["quality"] = {model: quality_at_budget(model, ns.quality_seconds, ns, joey_python, data, spm_model,
                                                          vocab, env) for model in ns.models}
        print(json.dumps(report, indent=2))
        if ns.json:
            Path(ns.json).write_text(json.dumps({**report, **common}, indent=2))
        return
    runs_dir = BENCH / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for model in ns.models:
        results[model] = {"mt": [], "joeynmt": []}
        for round_no in range(ns.rounds):
            for system in ("mt", "joeynmt"):
                out = runs_dir / f"{system}_{model}_{round_no}"
                shutil.rmtree(out, ignore_errors=True)
                if system == "mt":
                    cmd = [str(REPO / ".venv" / "bin" / "mt"), "train", "data=multi30k", f"data.dir={ns.multi30k}",
                           "data.tokenizer.joint=true", "data.tokenizer.src_vocab_size=8000", *MT_MODELS[model],
                           "train.max_tokens=4096", f"train.threads={ns.threads}", f"train.max_seconds={ns.seconds}",
                           "train.log_seconds=10", "train.valid_max_sentences=20", f"hydra.run.dir={out}",
                           f"cache_dir={BENCH / 'cache'}"]
                    budget, pattern, params = ns.seconds + 240, MT_RATE, MT_PARAMS
                else:
                    out.mkdir(parents=True)
                    cfg = joeynmt_config(model, data, spm_model, vocab, out / "model")
                    cmd = [str(joey_python), "-m", "joeynmt", "train", str(cfg)]
                    budget, pattern, params = ns.seconds + 60, JOEY_RATE, JOEY_PARAMS
                print(f"== {model} round {round_no + 1}/{ns.rounds}: {system}", flush=True)
                text, peak = run_timed(cmd, env, budget, out.with_suffix(".log"), REPO)
                if system == "joeynmt":
                    # JoeyNMT logs from its first update; keep the lines of the first ns.seconds only.
                    text = text[: _cut_after_seconds(text, ns.seconds)]
                rates = [float(x) for x in pattern.findall(text)]
                if not rates:  # a run that never trained is a failure to show, not a blank in the table
                    tail = text.strip().splitlines()[-1:] or ["(no output)"]
                    raise SystemExit(f"{system} {model} logged no throughput; its log {out.with_suffix('.log')} "
                                     f"ends: {tail[0]}")
                found = params.search(text)
                run = {"median_tok_s": median_after_warmup(rates, ns.warmup_lines), "lines": len(rates),
                       "peak_rss_mib": round(peak), "parameters": found.group(1) if found else None,
                       "rates": [round(r) for r in rates]}
                print(f"   {system}: median {run['median_tok_s']} tok/s over {len(rates)} lines, "
                      f"peak RSS {run['peak_rss_mib']} MiB, parameters {run['parameters']}", flush=True)
                results[model][system].append(run)
    print("\nmodel        system    target tok/s (median of runs)   peak RSS MiB   parameters")
    summary = {}
    for model, systems in results.items():
        row = {}
        for system, runs in systems.items():
            speeds = [r["median_tok_s"] for r in runs if r["median_tok_s"]]
            row[system] = {"tok_s": round(statistics.median(speeds)) if speeds else None,
                           "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                           "parameters": runs[0]["parameters"]}
            print(f"{model:<12} {system:<9} {row[system]['tok_s']!s:>28}   {row[system]['peak_rss_mib']:>12}   "
                  f"{row[system]['parameters']}")
        if row["mt"]["tok_s"] and row["joeynmt"]["tok_s"]:
            row["ratio"] = round(row["mt"]["tok_s"] / row["joeynmt"]["tok_s"], 2)
            print(f"{model:<12} mt / JoeyNMT: {row['ratio']}x")
        summary[model] = row
    if ns.json:
        Path(ns.json).write_text(json.dumps({"summary": summary, "runs": results, "seconds": ns.seconds, **common},
                                            indent=2))


def _cut_after_seconds(text: str, seconds: float) -> int:
    """Offset in JoeyNMT's log after its first ``seconds`` of training (from its timestamps)."""
    stamps = [(m.start(), time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")))
              for m in re.finditer(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", text, re.MULTILINE)]
    first = next((t for pos, t in stamps if "Tokens per Sec" in text[pos:pos + 300]), None)
    if first is None:
        return len(text)
    return next((pos for pos, t in stamps if t - first > seconds), len(text))


def versions(joey_python: Path) -> dict:
    import torch

    script = "import importlib.metadata as m; print(m.version('joeynmt'), m.version('torch'))"
    joey = subprocess.run([str(joey_python), "-c", script], capture_output=True, text=True, check=False)
    return {"mt_torch": torch.__version__, "joeynmt_and_torch": joey.stdout.strip()}


if __name__ == "__main__":
    main()
