"""Fault injection: a process killed (SIGKILL) at many points while it writes each kind of
output, and each file damaged afterwards (cut short, a byte flipped); then the next command
runs. Every outcome must be the last good state, a rebuild with one warning, or one error
line with exit status 2: never a traceback, never a partial file read as good, never a loss
of what was there before.

Kill points are the file operations a command makes under the folder it writes (opening a
file to write, renaming, removing, making a folder: Python's audit events), counted in a
run that is not killed. Commands run in processes forked from a server that imported mt
once, so a trial costs a fork, not an interpreter start. The default run tries a spread of
points per output; ``MT_FAULT_SWEEP=all`` tries every one (the longer sweep,
docs/lab/benchmarks.md "Reliability"):

    MT_FAULT_SWEEP=all MT_FAULT_REPORT=faults.jsonl scripts/test.sh -m faults

They are CI's second tier (``.ci/run``: ``scripts/test.sh -m faults`` after the default run).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import TINY_TRAIN

pytestmark = pytest.mark.faults

SWEEP = os.environ.get("MT_FAULT_SWEEP", "")
POINTS = 10_000 if SWEEP == "all" else 5  # kill points tried per output in the default run
WRITE_EVENTS = {"os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree", "shutil.copyfile", "os.truncate"}
REPORT = Path(os.environ.get("MT_FAULT_REPORT", "")) if os.environ.get("MT_FAULT_REPORT") else None


# -- what runs in the forked child ------------------------------------------------------

def _writes_under(event: str, args: tuple, root: str) -> bool:
    if event == "open":
        path, mode, flags = args
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        return bool(writing) and os.fsdecode(path).startswith(root)
    if event in WRITE_EVENTS:
        return any(isinstance(a, (str, bytes, os.PathLike)) and os.fsdecode(a).startswith(root) for a in args)
    return False


def _child(argv: list[str], root: str, kill_at: int, log: str, count_file: str) -> None:
    """Runs ``mt argv``; at the ``kill_at``-th write under ``root`` (0: never) the process kills
    itself. Writes its exit code, or the number of writes it made, to ``count_file``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    seen, done = [0], [False]

    def hook(event: str, args: tuple) -> None:
        if not done[0] and _writes_under(event, args, root):
            seen[0] += 1
            if seen[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    from mt.cli.main import main

    try:
        code = main(argv) if argv[0] != "prepare" else _prepare(argv[1:])
    except SystemExit as leaving:
        code = leaving.code if isinstance(leaving.code, int) else 1
    except BaseException:  # noqa: BLE001 (a traceback: what the checks below refuse)
        import traceback

        traceback.print_exc()
        code = 99
    done[0] = True
    sys.stdout.flush()
    sys.stderr.flush()
    with open(count_file, "w") as handle:
        json.dump({"code": code, "writes": seen[0]}, handle)
    os._exit(0)


def _prepare(overrides: list[str]) -> int:
    """What ``mt train`` does before its first step (tokenizers, encoded corpus), alone."""
    from mt.errors import MTError
    from mt.presets import compose
    from mt.training.pipeline import prepare_data

    try:
        data = prepare_data(compose(overrides))
    except MTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"ids {int(data.train.src.ids.sum())} {int(data.train.tgt.ids.sum())}")
    return 0


_CTX = None


def _context():
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(["mt.cli.main", "mt.cli.train", "mt.cli.translate", "mt.cli.export",
                                     "mt.model_dir", "mt.training.pipeline", "mt.export.int8", "mt.export"])
    return _CTX


@dataclass
class Outcome:
    code: int | None  # None: killed
    writes: int
    log: str

    def one_line_error(self) -> bool:
        lines = [line for line in self.log.splitlines() if line.strip()]
        return self.code == 2 and "Traceback" not in self.log and sum(line.startswith("error: ") for line in lines) == 1


def run(argv: list[str], root: Path, work: Path, kill_at: int = 0, timeout: float = 120) -> Outcome:
    log, count = work / "child.log", work / "child.json"
    count.unlink(missing_ok=True)
    env_before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        process = _context().Process(target=_child, args=(argv, str(root), kill_at, str(log), str(count)))
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            raise AssertionError(f"mt {' '.join(argv)} hung past {timeout} s")
    finally:
        if env_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_before
    text = log.read_text(errors="replace") if log.exists() else ""
    if process.exitcode == -signal.SIGKILL or not count.exists():
        return Outcome(None, kill_at, text)
    data = json.loads(count.read_text())
    return Outcome(data["code"], data["writes"], text)


def spread(total: int, wanted: int) -> list[int]:
    """Up to ``wanted`` kill points among 1..total, the first and last included."""
    if total <= wanted:
        return list(range(1, total + 1))
    return sorted({1 + round(i * (total - 1) / (wanted - 1)) for i in range(wanted)})


def _record(name: str, tried: int, survived: int) -> None:
    if REPORT is not None:
        with REPORT.open("a") as handle:
            handle.write(json.dumps({"output": name, "tried": tried, "survived": survived}) + "\n")


def _damages(path: Path) -> list[tuple[str, Callable[[bytes], bytes]]]:
    def flip(data: bytes) -> bytes:
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x5A]) + data[middle + 1:] if data else b"x"

    return [("cut", lambda data: data[: len(data) // 2]), ("flip", flip)]


def damage_each_file(folder: Path, check: Callable[[str], None], name: str,
                     reset: Callable[[], None] | None = None) -> None:
    """Every file of ``folder`` cut short, then with a byte flipped, one at a time (restored
    after, or ``reset`` before each): ``check(what)`` judges the next command."""
    files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    tried = 0
    for n, name_ in enumerate(files):
        damages = _damages(folder / name_)
        for how, damage in damages if SWEEP == "all" else [damages[n % 2]]:  # by default one a file, in turn
            if reset is not None:
                reset()
            path = folder / name_
            good = path.read_bytes()
            path.write_bytes(damage(good))
            check(f"{name_} {how}")
            tried += 1
            if path.exists():
                path.write_bytes(good)
    _record(f"{name}: damaged files", tried, tried)


def _refused_or_unchanged(outcome: Outcome, what: str, expected: Callable[[], bool]) -> None:
    """One error line, or (a byte of the manifest that no check reads, such as its date) the
    command's usual result."""
    if outcome.one_line_error():
        return
    assert outcome.code == 0 and what.startswith("manifest.json") and expected(), (what, outcome.code, outcome.log)


# -- the outputs ---------------------------------------------------------------------------

@pytest.fixture
def model(trained_model_dir, tmp_path) -> Path:
    return Path(shutil.copytree(trained_model_dir, tmp_path / "model"))


def _translate(target: Path, work: Path) -> Outcome:
    (work / "in.txt").write_text("The dog sleeps.\nA man calls the woman.\n")
    return run(["translate", str(target), "--input", str(work / "in.txt"), "--output", str(work / "out.txt")],
               work / "nowhere", work)


def test_an_export_killed_anywhere_leaves_the_earlier_export_or_the_new_one(model, tmp_path):
    out = tmp_path / "int8"
    argv = ["export", str(model), "--to", "int8", "--out", str(out)]
    first = run(argv, tmp_path, tmp_path)
    assert first.code == 0, first.log
    good = _translate(out, tmp_path)
    assert good.code == 0, good.log
    expected = (tmp_path / "out.txt").read_text()
    source = {p.name: p.read_bytes() for p in model.iterdir()}
    points = spread(first.writes, POINTS)
    for kill_at in points:
        killed = run(argv, tmp_path, tmp_path, kill_at)
        assert killed.code is None, f"point {kill_at} of {first.writes} was not reached: {killed.log}"
        after = _translate(out, tmp_path)
        assert after.code == 0 and (tmp_path / "out.txt").read_text() == expected, (kill_at, after.log)
        assert {p.name: p.read_bytes() for p in model.iterdir()} == source
        again = run(argv, tmp_path, tmp_path)  # and the next export is not stopped by what the kill left
        assert again.code == 0, (kill_at, again.log)
    _record("int8 export: killed", len(points), len(points))

    def check(what: str) -> None:
        _refused_or_unchanged(_translate(out, tmp_path), what, lambda: (tmp_path / "out.txt").read_text() == expected)

    damage_each_file(out, check, "int8 export")


def test_a_training_killed_anywhere_resumes_from_its_last_good_checkpoint(corpus_dir, tmp_path):
    """A run of 2 steps that finished, then its resume to the epoch's end killed at every write point: the
    model directory stays loadable, and the next resume goes on from a good checkpoint."""
    run_dir = tmp_path / "run"
    base = ["train", *TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}",
            "train.checkpoint_every=1", "train.valid_every=2", "train.keep_checkpoints=2"]
    first = run([*base, "train.max_steps=2", f"hydra.run.dir={run_dir}"], run_dir, tmp_path)
    assert first.code == 0, first.log
    pristine = tmp_path / "pristine"
    shutil.copytree(run_dir, pristine)
    resume = ["train", "train.max_steps=6", f"train.resume={run_dir}", f"hydra.run.dir={tmp_path / 'session'}"]
    full = run(resume, run_dir, tmp_path)
    assert full.code == 0, full.log
    steps = json.loads((run_dir / "checkpoints" / "last" / "progress.json").read_text())["step"]
    assert steps > 2
    points = spread(full.writes, POINTS)
    for kill_at in points:
        shutil.rmtree(run_dir)
        shutil.copytree(pristine, run_dir)
        killed = run(resume, run_dir, tmp_path, kill_at)
        assert killed.code is None, f"point {kill_at} of {full.writes} was not reached: {killed.log}"
        assert _translate(run_dir / "model", tmp_path).code == 0, kill_at
        again = run(resume, run_dir, tmp_path)
        assert again.code == 0, (kill_at, again.log)
        progress = json.loads((run_dir / "checkpoints" / "last" / "progress.json").read_text())
        assert progress["step"] == steps, (kill_at, progress["step"])
    _record("checkpoint and model directory (training): killed", len(points), len(points))

    def reset() -> None:
        shutil.rmtree(run_dir)
        shutil.copytree(pristine, run_dir)

    def check(what: str) -> None:
        _refused_or_unchanged(run(resume, run_dir, tmp_path), what, lambda: json.loads(
            (run_dir / "checkpoints" / "last" / "progress.json").read_text())["step"] == steps)

    damage_each_file(run_dir / "checkpoints" / "last", check, "checkpoint", reset)
    reset()
    assert _translate(run_dir / "model", tmp_path).code == 0
    expected = (tmp_path / "out.txt").read_text()

    def check_model(what: str) -> None:
        _refused_or_unchanged(_translate(run_dir / "model", tmp_path), what,
                              lambda: (tmp_path / "out.txt").read_text() == expected)

    damage_each_file(run_dir / "model", check_model, "model directory")


def test_caches_killed_anywhere_or_damaged_are_rebuilt_and_train_the_same(corpus_dir, tmp_path):
    """The tokenizer and encoded-corpus caches (data=files), killed at every write point while
    they are built, then damaged file by file: the next run prepares the same ids, with at most
    a warning."""
    cache = tmp_path / "cache"
    argv = ["prepare", *TINY_TRAIN, "data=files", f"data.dir={corpus_dir}", "data.src_lang=en", "data.tgt_lang=de",
            f"cache_dir={cache}"]
    full = run(argv, cache, tmp_path)
    assert full.code == 0, full.log
    ids = full.log.split("ids ")[-1]
    built = {p.relative_to(cache).as_posix(): p.read_bytes() for p in cache.rglob("*") if p.is_file()}
    points = spread(full.writes, POINTS)
    for kill_at in points:
        shutil.rmtree(cache)
        killed = run(argv, cache, tmp_path, kill_at)
        assert killed.code is None, f"point {kill_at} of {full.writes} was not reached: {killed.log}"
        again = run(argv, cache, tmp_path)
        assert again.code == 0 and again.log.split("ids ")[-1] == ids, (kill_at, again.log)
        now = {p.relative_to(cache).as_posix(): p.read_bytes() for p in cache.rglob("*") if p.is_file()}
        assert {k: v for k, v in now.items() if not k.endswith("meta.json")} == \
            {k: v for k, v in built.items() if not k.endswith("meta.json")}, kill_at
    _record("tokenizer and encoded caches: killed", len(points), len(points))

    def check(what: str) -> None:
        outcome = run(argv, cache, tmp_path)
        assert outcome.code == 0 and "Traceback" not in outcome.log, (what, outcome.log)
        assert outcome.log.split("ids ")[-1] == ids, (what, outcome.log)
        assert "is damaged" in outcome.log and "set aside" in outcome.log, (what, outcome.log)
        for aside in list(cache.rglob("*.damaged")):
            shutil.rmtree(aside) if aside.is_dir() else aside.unlink()

    for part in ("spm", "encoded"):
        # the cache entries alone (a tokenizer's seal, a cache's meta): every file of each is damaged in turn
        damage_each_file(cache / part, check, f"{part} cache")
