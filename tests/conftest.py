"""Shared fixtures: a tiny demo corpus, its tokenizers and tiny models."""

from __future__ import annotations

import ast
import inspect
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from mt.config import (
    Arch,
    AttentionConfig,
    AttentionReduction,
    AttentionType,
    Cell,
    ModelConfig,
    Normalizer,
    Positions,
    Score,
    TokenizerType,
)
from mt.data.corpus import load_parallel_files
from mt.data.demo_corpus import write_demo_corpus
from mt.data.tokenizer import cached_tokenizer
from mt.models import build_model

REPO = Path(__file__).resolve().parents[1]
TINY_SIZES = (200, 20, 20)
TINY_TRAIN = [
    "train.epochs=1", "train.max_steps=4", "train.valid_max_sentences=5", "train.threads=1",
    f"data.demo_sizes=[{','.join(map(str, TINY_SIZES))}]", "data.tokenizer.src_vocab_size=300",
    "data.tokenizer.tgt_vocab_size=300", "model.emb_dim=16", "model.hidden_dim=24", "model.enc_hidden_dim=12", "model.attention.dim=16", "model.ff_dim=32",
]

torch.set_num_threads(1)

# Every test computes in fp32 unless it asks for a precision itself: `auto` would pick bf16 on
# a CPU with AMX or AVX-512-BF16 and fp32 elsewhere, and no test's outcome may depend on the CPU
# that runs it. Set before anything resolves a precision; subprocesses (run_mt) inherit it.
# The bf16 path has tests of its own that force train.precision=bf16 (emulated where the CPU
# lacks it), and the choice `auto` makes is tested with the detection replaced
# (tests/test_precision.py).
os.environ["MT_PRECISION"] = "fp32"


def tiny_model_config(attention: str = "bahdanau", cell: str = "gru", score: str = "additive",
                      normalizer: str = "softmax", input_feeding: bool = True, window: int = 10, top_k: int = 0,
                      hard: bool = False) -> ModelConfig:
    return ModelConfig(name=f"test_{attention}", cell=Cell(cell), emb_dim=16, hidden_dim=24, enc_hidden_dim=12,
                       dropout=0.0, attention=AttentionConfig(
                           type=AttentionType(attention), score=Score(score), normalizer=Normalizer(normalizer),
                           input_feeding=input_feeding, window=window, dim=16, top_k=top_k, hard=hard))


# Every RNN variant a user can configure, as tiny_model_config arguments.
RNN_VARIANTS = {
    "noattn-gru": {"attention": "none"},
    "bahdanau-gru": {"attention": "bahdanau"},
    "bahdanau-lstm": {"attention": "bahdanau", "cell": "lstm"},
    "bahdanau-sparsemax": {"attention": "bahdanau", "normalizer": "sparsemax"},
    "luong-dot": {"attention": "luong", "score": "dot"},
    "luong-general": {"attention": "luong", "score": "general"},
    "luong-concat": {"attention": "luong", "score": "concat"},
    "luong-scaled_dot": {"attention": "luong", "score": "scaled_dot"},
    "luong-cosine-lstm": {"attention": "luong", "score": "cosine", "cell": "lstm"},
    "luong-general-no-feeding": {"attention": "luong", "score": "general", "input_feeding": False},
    "luong-dot-sparsemax": {"attention": "luong", "score": "dot", "normalizer": "sparsemax"},
    "luong-local": {"attention": "luong_local", "score": "general", "window": 2},
    "luong-euclidean": {"attention": "luong", "score": "euclidean"},
    "luong-pearson-no-feeding": {"attention": "luong", "score": "pearson", "input_feeding": False},
    "bahdanau-sigmoid": {"attention": "bahdanau", "normalizer": "sigmoid"},
    "luong-general-max": {"attention": "luong", "score": "general", "normalizer": "max"},
    "bahdanau-top2": {"attention": "bahdanau", "top_k": 2},
    "bahdanau-hard": {"attention": "bahdanau", "hard": True},
    "luong-local-hard": {"attention": "luong_local", "score": "general", "window": 2, "hard": True},
}
# Variants whose attention rows are gates, not distributions: they do not sum to one.
GATED_VARIANTS = ("bahdanau-sigmoid", "luong-general-max")


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """``mt train`` run in-process (main(["train", ...])) lets Hydra point the root logger at the
    stderr pytest captured for that test; a later test's warnings would go to the closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    return write_demo_corpus(tmp_path_factory.mktemp("demo"), sizes=TINY_SIZES, seed=7)


@pytest.fixture(scope="session")
def tokenizers(corpus_dir, tmp_path_factory):
    train = load_parallel_files(corpus_dir / "train.en", corpus_dir / "train.de")
    cache = tmp_path_factory.mktemp("cache")
    src = cached_tokenizer(train["src"], cache, 300, TokenizerType.bpe)
    tgt = cached_tokenizer(train["tgt"], cache, 300, TokenizerType.bpe)
    return src, tgt


def tiny_transformer_config(**kw) -> ModelConfig:
    settings = {"name": "test_transformer", "arch": Arch.transformer, "hidden_dim": 24, "heads": 4, "ff_dim": 32,
                    "enc_layers": 2, "dec_layers": 2, "dropout": 0.0, "max_positions": 64}
    settings.update(kw)
    return ModelConfig(**settings)


TRANSFORMER_VARIANTS = {
    "transformer": {},
    "transformer-learned-all-layers-untied": {"positions": Positions.learned, "tie_output": False,
                                                  "attention_reduction": AttentionReduction.all_layers},
}


def variant_config(name: str) -> ModelConfig:
    if name in TRANSFORMER_VARIANTS:
        return tiny_transformer_config(**TRANSFORMER_VARIANTS[name])
    return tiny_model_config(**RNN_VARIANTS[name])


ALL_VARIANTS = [*RNN_VARIANTS, *TRANSFORMER_VARIANTS]


@pytest.fixture(params=ALL_VARIANTS, ids=ALL_VARIANTS)
def model(request):
    torch.manual_seed(0)
    return build_model(variant_config(request.param), 40, 50).eval()


def assert_steps_match_forward(model, batch) -> None:
    """Decoding one step at a time (the search's path) gives the teacher-forced forward pass's
    logits and attention (training's path), step by step."""
    logits, attn = model(batch.src, batch.src_mask, batch.tgt_in)
    memory = model.encode(batch.src, batch.src_mask)
    state = model.init_state(memory)
    for t in range(batch.tgt_in.size(1)):
        step_logits, state, step_attn = model.decode_step(memory, state, batch.tgt_in[:, t])
        torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=1e-5)
        if attn is not None:
            torch.testing.assert_close(step_attn, attn[:, t], atol=1e-5, rtol=1e-5)


def run_mt(*args: str, cwd: Path, stdin: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs the ``mt`` command as a user would, in a subprocess."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", "mt.cli.main", *args], cwd=cwd, input=stdin, text=True,
                          capture_output=True, timeout=timeout, env=env, check=False)


def train_tiny(work: Path, corpus_dir: Path, *overrides: str, settings: Sequence[str] = TINY_TRAIN) -> Path:
    """Trains through ``mt train`` as a user would (tiny settings on the tiny corpus, more
    ``overrides``) into ``work/run``; returns the run directory."""
    result = run_mt("train", *settings, *overrides, f"data.dir={corpus_dir}", f"cache_dir={work / 'cache'}",
                    f"hydra.run.dir={work / 'run'}", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "run"


def kill_after_step(args: Sequence[str], run: Path, step: int, cwd: Path, timeout: float = 180) -> int:
    """Starts ``mt <args>`` (a training run writing to ``run``) and kills it, with every process
    it started, once its last checkpoint has reached ``step``; returns the step it was killed at."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "mt.cli.main", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    progress = run / "checkpoints" / "last" / "progress.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if json.loads(progress.read_text())["step"] >= step:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the run, and under torchrun its ranks
    proc.wait()
    return json.loads(progress.read_text())["step"]


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory, corpus_dir) -> Path:
    """A model directory written by a real (very short) ``mt train`` run."""
    return train_tiny(tmp_path_factory.mktemp("train"), corpus_dir) / "model"


@pytest.fixture
def counted(monkeypatch):
    """Counts the encodings that really run (not those read back from the cache)."""
    from mt.data import encoded

    calls = []
    real = encoded._encode_into

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(encoded, "_encode_into", counting)
    return calls


SECOND_TIER = ("faults", "clients", "newcomer", "distributed")

# What makes a test an integration test: it runs mt as a user does (the command, in a subprocess
# or in-process through mt.cli.main, a training run, a server, a browser, a wheel), itself or
# through a fixture: a call of one of these. Everything else calls library functions on tiny
# inputs: a unit test.
END_TO_END = {"run_mt", "main", "train_tiny", "kill_after_step", "Server", "run_training", "sync_playwright",
              "run", "Popen", "check_output", "check_call", "create"}  # the last four as subprocess.X / venv.X
_MODULES_THAT_SPAWN = {"subprocess", "venv"}


def _calls_end_to_end(function, depth: int = 2) -> bool:
    """Whether ``function`` calls one of END_TO_END, itself or through a helper of the tests
    (``depth`` levels down)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in END_TO_END - {"run", "create"}:
            return True
        if isinstance(node.func, ast.Name) and depth > 0:
            helper = getattr(function, "__globals__", {}).get(node.func.id)
            if inspect.isfunction(helper) and helper.__module__.startswith(("tests", "conftest", "test_")) \
                    and _calls_end_to_end(helper, depth - 1):
                return True
        if (isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                and node.func.value.id in _MODULES_THAT_SPAWN and node.func.attr in END_TO_END):
            return True
    return False


def _end_to_end(item) -> bool:
    functions = [getattr(item, "function", None)]
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    functions += [d.func for defs in definitions.values() for d in defs]
    return any(_calls_end_to_end(f) for f in functions if f is not None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every test is marked ``unit`` or ``integration`` (``-m unit`` runs the fast half alone).
    CI's second tier (SECOND_TIER) stays out of a plain run; ``-m`` of any kind,
    or a test file or test named on the command line, decides for itself."""
    for item in items:
        item.add_marker("integration" if _end_to_end(item) else "unit")
    if config.option.markexpr or any(Path(arg.split("::")[0]).is_file() for arg in config.args):
        return

    def later(item) -> bool:
        return any(item.get_closest_marker(name) is not None for name in SECOND_TIER)

    kept = [item for item in items if not later(item)]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if later(item)])
        items[:] = kept
