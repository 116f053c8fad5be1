"""mt as people install it: a wheel, in a fresh virtual environment outside the repository.

The wheel is built from a copy of the sources (nothing written into the checkout), installed
with ``pip install --no-deps`` into a new venv, and used from a folder that is not the
repository: ``mt --version``, two training steps with the configs the wheel carries and a
preset from the user's own ``--config-dir``, ``mt translate`` and ``mt explore`` (whose page
template the wheel carries too). The new venv borrows the test environment's dependencies
(torch, hydra, ...) through a ``.pth`` line rather than downloading them again: only mt
itself comes from the wheel, as the test checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO, TINY_SIZES

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "mt")


def _run(args: list[str], cwd: Path, stdin: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    result = subprocess.run(args, cwd=cwd, input=stdin, text=True, capture_output=True, timeout=timeout, env=env,
                            check=False)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
         cwd=src)
    (found,) = out.glob("mt-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root)
    python = root / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=root).stdout.strip())
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         cwd=root)
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def test_the_wheel_carries_the_configs_the_page_and_the_metadata(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "mt/conf/config.yaml" in names and "mt/conf/model/transformer.yaml" in names
    assert "mt/conf/data/demo.yaml" in names and "mt/visualization/explorer.html" in names
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    for field in ("License-Expression: MIT", "Requires-Python: >=3.10", "Classifier: Programming Language :: Python",
                  "Requires-Dist: hydra-core", "Requires-Dist: torch", "Summary: Neural machine translation"):
        assert field in meta, field


def test_installed_from_the_wheel_mt_trains_translates_and_explores_outside_the_repository(venv, tmp_path):
    mt, python = venv / "bin" / "mt", venv / "bin" / "python"
    where = _run([str(python), "-c", "import mt; print(mt.__file__)"], cwd=tmp_path).stdout.strip()
    assert where.startswith(str(venv)), f"mt was imported from {where}, not from the wheel"
    assert _run([str(mt), "--version"], cwd=tmp_path).stdout.startswith("mt 0.")
    assert _run([str(python), "-m", "mt", "--version"], cwd=tmp_path).stdout.startswith("mt 0.")
    # A preset of the user's own, built on one the wheel carries.
    presets = tmp_path / "my_presets" / "model"
    presets.mkdir(parents=True)
    (presets / "tiny_rnn.yaml").write_text("defaults:\n  - rnn_noattn\n  - _self_\nname: tiny_rnn\nemb_dim: 16\n"
                                           "hidden_dim: 24\nenc_hidden_dim: 12\n")
    sizes = ",".join(map(str, TINY_SIZES))
    _run([str(mt), "train", "--config-dir", str(tmp_path / "my_presets"), "model=tiny_rnn", "train.max_steps=2",
          "train.epochs=1", "train.valid_max_sentences=5", "train.threads=1", f"data.demo_sizes=[{sizes}]",
          "data.tokenizer.src_vocab_size=300", "data.tokenizer.tgt_vocab_size=300", "hydra.run.dir=run"],
         cwd=tmp_path)
    model = tmp_path / "run" / "model"
    assert "name: tiny_rnn" in (model / "config.yaml").read_text() and "hidden_dim: 24" in \
        (model / "config.yaml").read_text()
    assert (tmp_path / "data" / "demo" / "train.en").is_file()  # the demo corpus, under the user's folder
    out = _run([str(mt), "translate", str(model)], cwd=tmp_path, stdin="The dog sleeps.\n\n").stdout
    assert len(out.splitlines()) == 2
    _run([str(mt), "explore", str(model), "--src-file", str(tmp_path / "data" / "demo" / "test.en"),
          "--max-sentences", "3", "--out", str(tmp_path / "page.html")], cwd=tmp_path)
    assert "__MT_DATA__" not in (tmp_path / "page.html").read_text()


def _try(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    return subprocess.run(args, cwd=cwd, input=stdin, text=True, capture_output=True, timeout=300, env=env, check=False)


@pytest.mark.newcomer
def test_a_newcomers_first_hour_mistakes_included(venv, tmp_path):
    """The path of a new user, from the wheel in a folder outside the checkout, on a corpus of their
    own named as Multi30k names its splits: each mistake stops with a line naming the fix, and
    leaves nothing behind; each command then works as they would expect."""
    from mt.data.demo_corpus import write_demo_corpus

    mt = str(venv / "bin" / "mt")
    demo = write_demo_corpus(tmp_path / "demo", sizes=TINY_SIZES, seed=3)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, name in (("train", "train"), ("valid", "val"), ("test", "test")):
        for lang in ("en", "de"):
            shutil.copy(demo / f"{split}.{lang}", corpus / f"{name}.{lang}")
    tiny = ["train.epochs=1", "train.max_steps=3", "train.valid_max_sentences=5", "train.threads=1",
            "data.tokenizer.src_vocab_size=200", "data.tokenizer.tgt_vocab_size=200", "model.emb_dim=16",
            "model.hidden_dim=24", "model.enc_hidden_dim=12", "model.attention.dim=16"]
    own = ["data=files", "data.dir=corpus", "data.src_lang=en", "data.tgt_lang=de"]

    # A misspelt key, with or without Hydra's +: stopped, with the key meant, and no run folder left.
    for typo in ("train.max_second=5", "+train.max_second=5"):
        result = _try([mt, "train", *own, *tiny, typo], tmp_path)
        assert result.returncode == 2 and "did you mean train.max_seconds?" in result.stderr, result.stderr
    # Multi30k's val.en where mt expects valid.en: the setting that fixes it is named.
    result = _try([mt, "train", *own, *tiny], tmp_path)
    assert result.returncode == 2 and "name the valid split with data.valid=NAME" in result.stderr, result.stderr
    assert "val.en" in result.stderr and not (tmp_path / "runs").exists()
    # The settings in a file, as JoeyNMT and OpenNMT users keep them; overrides after it win.
    (tmp_path / "first.yaml").write_text("data:\n  source: files\n  dir: corpus\n  src_lang: en\n  tgt_lang: de\n"
                                         "  valid: val\ntrain:\n  max_steps: 100\n")
    result = _try([mt, "train", "first.yaml", *tiny, "hydra.run.dir=runs/first"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "runs" / "first"
    assert "max_steps: 3" in (run / "model" / "config.yaml").read_text()
    assert "dir: corpus\n" in (run / "model" / "config.yaml").read_text()  # as typed; found again from anywhere

    # The run folder where a model is asked for; the default beam shown.
    assert "(default 4)" in " ".join(_try([mt, "translate", "--help"], tmp_path).stdout.split())
    result = _try([mt, "translate", "runs/first"], tmp_path, stdin="The dog sleeps .\n")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1, result.stderr
    # Swapped test files: refused by name; meant, with --force-language.
    swapped = [mt, "evaluate", "runs/first", "--src", "corpus/test.de", "--ref", "corpus/test.en"]
    result = _try(swapped, tmp_path)
    assert result.returncode == 2 and "looks like 'de' text but the model's source language is 'en'" in result.stderr
    assert _try([*swapped, "--force-language"], tmp_path).returncode == 0
    result = _try([mt, "evaluate", "runs/first", "--src", "corpus/test.en", "--ref", "corpus/test.de"], tmp_path)
    assert result.returncode == 0 and "BLEU" in result.stdout, result.stderr

    # mt compare from another folder, on the run's own test split.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _try([mt, "compare", str(run), "--split", "test", "--bootstrap", "20", "--no-progress", "--out", "cmp"],
                  elsewhere)
    assert result.returncode == 0, result.stderr[-2000:]
    assert max(len(line) for line in result.stdout.splitlines()) <= 130  # a terminal holds it

    # One sentence's heatmap over words; an int8 export a web server running as another user can read.
    result = _try([mt, "align", "runs/first", "--src", "The small dog sleeps .", "--words", "--out", "a.png",
                   "--json", "a.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"src_words": ["The", "small", "dog", "sleeps", "."]' in (tmp_path / "a.json").read_text()
    result = _try([mt, "export", "runs/first", "--to", "int8", "--out", "int8"], tmp_path)
    assert result.returncode == 0, result.stderr
    for weights in (run / "model" / "model.safetensors", tmp_path / "int8" / "model.int8.safetensors"):
        assert weights.stat().st_mode & 0o044 == 0o044, oct(weights.stat().st_mode)
    assert _try([mt, "translate", "int8"], tmp_path, stdin="The dog sleeps .\n").returncode == 0
