"""Nothing a user points mt at is deleted, and nothing half-written is trusted: ``--out`` rules
for ``mt export`` and ``mt average``, sealed model directories, and caches that prove
themselves (rebuilt with one warning when damaged, shared by processes that build them at once)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mt.cli.main import main
from mt.data.encoded import META
from mt.export import open_translator
from mt.files import MANIFEST
from mt.model_dir import load_model_dir
from mt.presets import compose
from mt.training.pipeline import prepare_data

from .conftest import REPO, TINY_TRAIN


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def model(trained_model_dir, tmp_path) -> Path:
    """A copy of the trained model this test may be careless with."""
    return Path(shutil.copytree(trained_model_dir, tmp_path / "model"))


def test_export_never_deletes_a_folder_it_did_not_write(model, tmp_path, capsys):
    """The reviewer's case: a folder with notes, and the model itself, as --out."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    before = _tree(out)
    for extra in ([], ["--force"]):
        err = _error(capsys, ["export", str(model), "--to", "int8", "--out", str(out), *extra])
        assert f"--out {out} is not empty (notes.txt)" in err and "--force" in err
        assert _tree(out) == before
    model_files = _tree(model)
    for extra in ([], ["--force"]):
        err = _error(capsys, ["export", str(model), "--to", "int8", "--out", str(model), *extra])
        assert "is the model it reads" in err
        err = _error(capsys, ["export", str(model), "--to", "int8", "--out", str(model / "int8"), *extra])
        assert "inside or around the model it reads" in err
    assert _tree(model) == model_files
    load_model_dir(model)  # still whole
    (tmp_path / "a_file").write_text("x")
    assert "is a file" in _error(capsys, ["export", str(model), "--to", "int8", "--out", str(tmp_path / "a_file")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "mine", "model"]  # no temporary folder left


def test_an_earlier_export_is_replaced_and_force_only_reaches_outputs_mt_made_from_models(model, tmp_path, capsys):
    out = tmp_path / "export"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(model), "--to", "int8", "--out", str(empty)]) == 0  # an empty folder is new
    assert main(["export", str(model), "--to", "int8", "--out", str(out)]) == 0
    first = json.loads((out / MANIFEST).read_text())
    assert first["kind"] == "int8 export" and "model.int8.safetensors" in first["files"]
    assert main(["export", str(model), "--to", "int8", "--out", str(out)]) == 0  # a rerun: same kind, replaced
    assert json.loads((out / MANIFEST).read_text())["kind"] == "int8 export"
    assert main(["average", str(model), str(model), "--out", str(tmp_path / "avg")]) == 0
    err = _error(capsys, ["export", str(model), "--to", "int8", "--out", str(tmp_path / "avg")])
    assert "holds an average, not an int8 export: pass --force to replace it" in err
    assert main(["export", str(model), "--to", "int8", "--out", str(tmp_path / "avg"), "--force"]) == 0
    assert json.loads((tmp_path / "avg" / MANIFEST).read_text())["kind"] == "int8 export"
    # A trained model is never a derived output: not even --force replaces it.
    trained = Path(shutil.copytree(model, tmp_path / "trained"))
    err = _error(capsys, ["export", str(model), "--to", "int8", "--out", str(trained), "--force"])
    assert "holds a model, which --force never replaces" in err
    err = _error(capsys, ["average", str(model), str(out), "--out", str(trained), "--force"])
    assert "which --force never replaces" in err
    assert _tree(trained) == _tree(model)


def test_average_refuses_a_foreign_out_and_its_own_sources(model, tmp_path, capsys):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"\xff\xd8")
    err = _error(capsys, ["average", str(model), str(model), "--out", str(out), "--force"])
    assert "is not empty (cat.jpg) and mt did not write it" in err
    assert (out / "cat.jpg").read_bytes() == b"\xff\xd8"
    assert "is the model it reads" in _error(capsys, ["average", str(model), str(model), "--out", str(model)])


def test_training_never_replaces_a_folder_of_the_user_named_like_its_outputs(corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "draft.txt").write_text("mine\n")
    argv = ["train", *TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"]
    assert main(argv) == 2  # refused before Hydra writes into the folder
    err = capsys.readouterr().err
    assert not (run / ".hydra").exists()
    assert f"{run / 'model'} is in the way" in err and "never replaces a folder it did not write" in err
    assert (run / "model" / "draft.txt").read_text() == "mine\n"
    assert not list(run.glob(".model.mt-tmp-*"))


def test_a_new_run_never_starts_over_an_earlier_one_in_the_same_folder(corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", *TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"]
    assert main(argv) == 0
    trained = _tree(run / "model")
    capsys.readouterr()
    assert main(argv) == 2  # refused before Hydra writes its record into the run
    err = capsys.readouterr().err
    assert f"{run} already holds a training run (model and checkpoints): continue it with train.resume={run}" in err
    assert _tree(run / "model") == trained


@pytest.mark.parametrize("name", ["model.safetensors", "config.yaml", "src.model"])
def test_a_flipped_byte_in_a_sealed_model_is_named_never_loaded(model, tmp_path, capsys, name):
    """Damage a parser would still read (a byte of the weights, of a number in the config)."""
    path = model / name
    data = bytearray(path.read_bytes())
    if name == "config.yaml":  # a digit for another: still valid YAML of the same schema
        at = next(i for i, c in enumerate(data) if chr(c).isdigit())
        data[at] = ord("7") if data[at] != ord("7") else ord("6")
    else:
        data[len(data) - 3] ^= 0x01
    path.write_bytes(bytes(data))
    (tmp_path / "in.txt").write_text("The dog sleeps.\n")
    err = _error(capsys, ["translate", str(model), "--input", str(tmp_path / "in.txt")])
    assert f"{path} is not the file mt wrote" in err and "delete" in err and MANIFEST in err
    path.write_bytes(path.read_bytes()[:-1])
    assert f"{path} is damaged: " in _error(capsys, ["translate", str(model), "--input", str(tmp_path / "in.txt")])


# -- caches ------------------------------------------------------------------------------


def _cfg(corpus_dir: Path, cache: Path):
    return compose([*TINY_TRAIN, "data=files", f"data.dir={corpus_dir}", "data.src_lang=en", "data.tgt_lang=de",
                    f"cache_dir={cache}"])


def _not_vocabulary(record: logging.LogRecord) -> bool:
    """Not the notice that the tiny corpus gave fewer pieces than TINY_TRAIN asks for."""
    return "vocab_size" not in record.getMessage()


def _entry(cache: Path) -> Path:
    (folder,) = [p for p in (cache / "encoded").iterdir() if not p.name.endswith(".damaged")]
    return folder


@pytest.mark.parametrize("damage", ["truncate src.bin", "flip offsets", "drop meta", "garbage meta"])
def test_a_damaged_encoded_corpus_is_set_aside_and_encoded_again(corpus_dir, tmp_path, caplog, damage):
    cache = tmp_path / "cache"
    cfg = _cfg(corpus_dir, cache)
    first = prepare_data(cfg).train.src.ids.tolist()  # a copy: the mapping sees the damage below
    folder = _entry(cache)
    if damage == "truncate src.bin":  # the reviewer's case: mmap length is greater than file size, forever
        (folder / "src.bin").write_bytes((folder / "src.bin").read_bytes()[:-7])
    elif damage == "flip offsets":
        path = folder / "src.offsets.npy"
        data = bytearray(path.read_bytes())
        data[-5] ^= 0x10
        path.write_bytes(bytes(data))
    elif damage == "drop meta":
        (folder / META).unlink()
    else:
        (folder / META).write_text("{")
    with caplog.at_level(logging.WARNING, logger="mt.train"):
        again = prepare_data(cfg)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "encoded corpus" in r.getMessage()]
    assert len(warnings) == 1 and "is damaged" in warnings[0] and "set aside" in warnings[0], warnings
    assert again.train.src.ids.tolist() == first
    assert (folder.parent / f"{folder.name}.damaged").is_dir() and (folder / META).is_file()
    caplog.clear()
    prepare_data(cfg)  # and the rebuilt one is trusted
    assert not [r for r in caplog.records if r.levelno == logging.WARNING and _not_vocabulary(r)]


def test_a_damaged_tokenizer_cache_is_set_aside_and_trained_again(corpus_dir, tmp_path, caplog):
    cache = tmp_path / "cache"
    cfg = _cfg(corpus_dir, cache)
    first = prepare_data(cfg).train.src.ids.tolist()
    models = sorted((cache / "spm").glob("*.model"))
    assert models and all(m.with_name(m.name + ".json").is_file() for m in models)
    good = models[0].read_bytes()
    models[0].write_bytes(good[: len(good) // 3])
    shutil.rmtree(cache / "encoded")  # the key holds the tokenizer's bytes: a new one is encoded anyway
    with caplog.at_level(logging.WARNING, logger="mt.train"):
        again = prepare_data(cfg)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and _not_vocabulary(r)]
    assert len(warnings) == 1 and "tokenizer cache" in warnings[0] and "set aside" in warnings[0], warnings
    assert models[0].read_bytes() == good  # SentencePiece is seeded: the same model again
    assert again.train.src.ids.tolist() == first


_BUILD = """
import sys, json, time
from pathlib import Path
from mt.presets import compose
from mt.training.pipeline import prepare_data
go = Path(sys.argv[3])
while not go.exists():
    time.sleep(0.01)
data = prepare_data(compose(json.loads(sys.argv[1])))
ids = data.train.src.ids
print(json.dumps({"file": str(getattr(ids, "filename", None)), "sum": int(ids.sum()), "n": len(ids)}))
"""


def test_two_runs_building_the_same_caches_at_once_both_finish_and_map_the_same_files(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    words = ["the", "a", "old", "man", "woman", "dog", "calls", "sees", "sleeps", "in", "house", "today", "small", "red", "car"]
    for split, n in (("train", 3000), ("valid", 20), ("test", 20)):
        lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(1 + i % 11)) for i in range(n)]
        (corpus / f"{split}.en").write_text("".join(line + "\n" for line in lines))
        (corpus / f"{split}.de").write_text("".join(line.upper() + "\n" for line in lines))
    overrides = [*TINY_TRAIN, "data=files", f"data.dir={corpus}", "data.src_lang=en", "data.tgt_lang=de",
                 f"cache_dir={tmp_path / 'cache'}"]
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    runs = [subprocess.Popen([sys.executable, "-c", _BUILD, json.dumps(overrides), "x", str(go)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()
    results = [run.communicate(timeout=120) for run in runs]
    for run, (out, err) in zip(runs, results):
        assert run.returncode == 0 and "Traceback" not in err, err
    seen = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert seen[0] == seen[1] and seen[0]["file"] is not None
    assert Path(seen[0]["file"]).parent == _entry(tmp_path / "cache")
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*") if "tmp" in p.name or p.name.endswith(".damaged")]
    assert not leftovers


def test_a_run_killed_between_the_two_renames_resumes_from_last_old_and_checkpoints_again(corpus_dir, tmp_path):
    """Found by the fault sweep: resuming from ``last.old`` read the tokenizers from there, and
    the first new checkpoint removed that folder under the run's next save."""
    run = tmp_path / "run"
    base = ["train", *TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}",
            "train.checkpoint_every=1", "train.valid_every=2"]
    assert main([*base, "train.max_steps=2", f"hydra.run.dir={run}"]) == 0
    last = run / "checkpoints" / "last"
    last.rename(last.with_name(".last.mt-old"))  # where a kill between the renames leaves it
    assert main(["train", "train.max_steps=4", f"train.resume={run}", f"hydra.run.dir={tmp_path / 'again'}"]) == 0
    assert json.loads((last / "progress.json").read_text())["step"] == 4
    assert not last.with_name(".last.mt-old").exists()
    load_model_dir(run / "model")


# -- what a review found (each reproduced before the fix) -----------------------------------


def test_a_backup_or_a_file_named_like_mts_previous_version_is_never_removed(model, tmp_path):
    out = tmp_path / "exp"
    assert main(["export", str(model), "--to", "int8", "--out", str(out)]) == 0
    (tmp_path / "exp.old").write_text("my notes\n")  # a user's file
    assert main(["export", str(model), "--to", "int8", "--out", str(out)]) == 0
    assert (tmp_path / "exp.old").read_text() == "my notes\n"
    backup = Path(shutil.copytree(model, tmp_path / "model.old"))  # mv model model.old: a user's backup
    from mt.model_dir import save_model_dir

    loaded = load_model_dir(model)
    save_model_dir(model, loaded.model, loaded.config, loaded.src_tokenizer, loaded.tgt_tokenizer)
    assert backup.is_dir() and load_model_dir(backup)


def test_an_output_holding_files_mt_did_not_write_is_not_replaced(model, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["export", str(model), "--to", "int8", "--out", str(out)]) == 0
    (out / "README.txt").write_text("how I exported it\n")
    err = _error(capsys, ["export", str(model), "--to", "int8", "--out", str(out), "--force"])
    assert "files mt did not write (README.txt)" in err
    assert (out / "README.txt").is_file()

    open_translator(str(out))  # an extra file does not stop it loading


def test_numbered_images_of_the_users_are_not_taken_for_heatmaps(trained_model_dir, corpus_dir, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(1, 6):
        (frames / f"{i:05d}.png").write_text(f"my frame {i}\n")
    before = _tree(frames)
    err = _error(capsys, ["align", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en"),
                          "--ref-file", str(corpus_dir / "test.de"), "--out-dir", str(frames), "--force"])
    assert "mt did not write it" in err and _tree(frames) == before
    maps = tmp_path / "maps"  # its own folder: sealed, and a rerun with fewer pairs removes the stale ones
    assert main(["align", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en"),
                 "--ref-file", str(corpus_dir / "test.de"), "--out-dir", str(maps), "--max-plots", "3"]) == 0
    assert json.loads((maps / MANIFEST).read_text())["kind"] == "set of heatmaps"
    assert main(["align", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en"),
                 "--ref-file", str(corpus_dir / "test.de"), "--out-dir", str(maps), "--max-plots", "2"]) == 0
    assert sorted(p.name for p in maps.iterdir()) == ["00001.png", "00002.png", MANIFEST]
    (maps / "00009.png").write_text("mine\n")  # put in by hand: never listed, so never removed
    for _ in range(2):
        assert main(["align", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en"),
                     "--ref-file", str(corpus_dir / "test.de"), "--out-dir", str(maps), "--max-plots", "2"]) == 0
    assert (maps / "00009.png").read_text() == "mine\n"
    assert "00009.png" not in json.loads((maps / MANIFEST).read_text())["files"]


def test_the_demo_never_writes_into_a_folder_of_the_users(tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "translations.txt").write_text("3 weeks of work\n")
    err = _error(capsys, ["demo", "--out", str(thesis), "--epochs", "1"])
    assert "mt did not write it" in err and (thesis / "translations.txt").read_text() == "3 weeks of work\n"
    from mt.analysis.demo import _check_demo_out

    interrupted = tmp_path / "interrupted"  # what a demo stopped while it evaluated leaves: runs, plan, tables
    for name in ("rnn_noattn", "rnn_bahdanau", "alignments"):
        (interrupted / name).mkdir(parents=True)
    (interrupted / "plan.json").write_text("{}")
    (interrupted / "scores.csv").write_text("model\n")
    _check_demo_out(interrupted)


def test_a_file_where_the_run_puts_its_model_is_refused_before_training(corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model").write_text("notes\n")
    argv = ["train", *TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"]
    assert main(argv) == 2 and "is in the way (a file" in capsys.readouterr().err
    assert (run / "model").read_text() == "notes\n" and not list(run.glob(".model.mt-tmp-*"))


def test_odd_out_paths_and_manifests_are_one_line_or_work(model, tmp_path, capsys, monkeypatch):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert "is a symbolic link" in _error(capsys, ["export", str(model), "--to", "int8", "--out",
                                                   str(tmp_path / "dangling")])
    assert not list(tmp_path.glob(".dangling*"))
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main(["export", str(model), "--to", "int8", "--out", "."]) == 0
    cut = Path(shutil.copytree(model, tmp_path / ".cut.mt-old"))  # a write into tmp_path/cut cut short
    assert main(["export", str(tmp_path / "cut"), "--to", "int8", "--out", str(tmp_path / "from_cut")]) == 0
    assert cut.is_dir()
    assert json.loads((here / MANIFEST).read_text())["kind"] == "int8 export"
    manifest = json.loads((model / MANIFEST).read_text())
    for bad in ({"config.yaml": "oops"}, {"../../etc/hostname": {"size": 1, "sha256": "x"}},
                {"/etc/hostname": {"size": 1, "sha256": "x"}}, {}):
        (model / MANIFEST).write_text(json.dumps({**manifest, "files": bad}))
        (tmp_path / "in.txt").write_text("The dog sleeps.\n")
        err = _error(capsys, ["translate", str(model), "--input", str(tmp_path / "in.txt")])
        assert f"{model / MANIFEST} is damaged" in err and "hostname" not in err.split("damaged")[1][:40]


def test_a_read_only_cache_of_an_earlier_mt_is_used_as_it_is(corpus_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cfg = _cfg(corpus_dir, cache)
    prepare_data(cfg)
    for seal in (cache / "spm").glob("*.json"):
        seal.unlink()  # as an earlier mt cached them
    from mt.data import tokenizer

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tokenizer, "atomic_write_text", read_only)
    prepare_data(cfg)  # no seal written, nothing set aside, no error
    assert not list((cache / "spm").glob("*.damaged"))


def test_only_this_hosts_dead_temporaries_are_cleared(tmp_path):
    from mt.files import HOST, clear_stale_temps

    target = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    mine, other = tmp_path / f".out.mt-tmp-{HOST}-{pid}", tmp_path / f".out.mt-tmp-otherhost-{pid}"
    for folder in (mine, other):
        folder.mkdir()
        (folder / "f").write_text("x")
    clear_stale_temps(target)
    assert not mine.exists() and other.is_dir()


def test_weights_are_readable_as_any_file_the_user_creates(model, tmp_path):
    """safetensors writes 0600; a web server running as another user must read a model as it
    reads the config beside it (0666 less the umask)."""
    from mt.export.int8 import export_int8
    from mt.training.averaging import average_models

    old = os.umask(0o022)
    try:
        written = [model / "model.safetensors",
                   export_int8(model, tmp_path / "int8") / "model.int8.safetensors",
                   average_models([model, model], tmp_path / "avg") / "model.safetensors"]
    finally:
        os.umask(old)
    for path in written:
        assert path.stat().st_mode & 0o777 == (model / "config.yaml").stat().st_mode & 0o777 == 0o644, path
