"""Nothing a user points mt at is ever deleted, no half-written file is ever trusted.

Every file a command writes goes to a temporary name beside it and is renamed over the old
version only once complete: a failed write (the disk fills half-way, simulated here) leaves the
previous version whole and no temporary file behind. A folder a command fills with several files
(``mt compare --out``, ``mt align --out-dir``, ``--save-systems``) must be new, empty or an
earlier output of the same kind; a folder mt did not write is refused in one line, untouched,
even with ``--force``. An output is never one of the command's inputs.
"""

from __future__ import annotations

import builtins
import errno
import gzip
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from mt.cli.main import main
from mt.errors import MTError

OLD = "the previous version\n"


class _FillingDisk:
    """A file handle whose first write puts half of its data on the disk, then fails as a full disk does."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, data):
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()

    def __iter__(self):
        return iter(self._handle)


@pytest.fixture
def disk_fills(monkeypatch):
    """``disk_fills("name")``: from now on, writing a file whose name contains ``name`` (the file,
    or a temporary name beside it) fails half-way, as on a full disk."""
    real_open = builtins.open

    def start(name: str) -> None:
        def failing_open(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            if isinstance(file, (str, os.PathLike)) and name in os.path.basename(os.fspath(file)) and \
                    any(m in mode for m in "wax+"):
                return _FillingDisk(handle)
            return handle

        monkeypatch.setattr(builtins, "open", failing_open)
        monkeypatch.setattr(io, "open", failing_open)

    return start


def _only(folder: Path, *names: str) -> None:
    """``folder`` holds exactly ``names``: no temporary file left behind."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def _one_line_error(capsys, *words: str) -> str:
    """The command ended in one line (after any progress bar), naming ``words``."""
    printed = capsys.readouterr().err
    err = printed.strip().splitlines()[-1].split("\r")[-1]
    assert err.startswith("error: ") and "Traceback" not in printed and printed.count("error: ") == 1, printed
    for word in words:
        assert word in err, err
    return err


def _previous(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OLD)
    return path


# -- single files: a failed write keeps the previous version, and no temporary file ---------


def test_translate_output_cut_short_keeps_the_previous_file(trained_model_dir, tmp_path, capsys, disk_fills):
    src = tmp_path / "in" / "src.txt"
    src.parent.mkdir()
    src.write_text("The dog sleeps.\nA small red car waits near the old house.\n")
    out = _previous(tmp_path / "out" / "hyp.txt")
    disk_fills("hyp.txt")
    assert main(["translate", str(trained_model_dir), "--input", str(src), "-o", str(out)]) == 2
    _one_line_error(capsys, str(out), "no space left")
    assert out.read_text() == OLD
    _only(out.parent, "hyp.txt")


def test_translate_output_written_whole(trained_model_dir, tmp_path, capsys):
    src = tmp_path / "src.txt"
    src.write_text("The dog sleeps.\n\nThe cat.\n")
    out = _previous(tmp_path / "out" / "hyp.txt")
    os.chmod(out, 0o640)
    assert main(["translate", str(trained_model_dir), "--input", str(src), "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3
    assert oct(out.stat().st_mode & 0o777) == oct(0o640)  # the replaced file keeps its permissions
    _only(out.parent, "hyp.txt")
    # through a symbolic link: the file it points to is replaced, the link stays a link
    link = tmp_path / "out" / "link.txt"
    link.symlink_to(out)
    assert main(["translate", str(trained_model_dir), "--input", str(src), "-o", str(link)]) == 0
    assert link.is_symlink() and len(out.read_text().splitlines()) == 3


def test_evaluate_outputs_cut_short_keep_the_previous_files(trained_model_dir, corpus_dir, tmp_path, capsys,
                                                            disk_fills):
    hyp, scores = _previous(tmp_path / "o" / "hyp.txt"), _previous(tmp_path / "o" / "scores.json")
    args = ["evaluate", str(trained_model_dir), "--src", str(corpus_dir / "test.en"), "--ref",
            str(corpus_dir / "test.de"), "--output", str(hyp), "--json", str(scores)]
    disk_fills("scores.json")
    assert main(args) == 2
    _one_line_error(capsys, str(scores))
    assert scores.read_text() == OLD
    _only(hyp.parent, "hyp.txt", "scores.json")


def test_align_one_sentence_cut_short_keeps_the_previous_image_and_json(trained_model_dir, tmp_path, capsys,
                                                                        disk_fills):
    image, weights = _previous(tmp_path / "o" / "map.png"), _previous(tmp_path / "o" / "map.json")
    args = ["align", str(trained_model_dir), "--src", "The dog sleeps.", "--out", str(image), "--json", str(weights)]
    disk_fills("map.png")
    assert main(args) == 2
    _one_line_error(capsys, str(image))
    assert image.read_text() == OLD and weights.read_text() == OLD
    _only(image.parent, "map.png", "map.json")
    disk_fills("map.json")
    assert main(args) == 2
    assert weights.read_text() == OLD and image.read_bytes().startswith(b"\x89PNG")
    _only(image.parent, "map.png", "map.json")


@pytest.mark.parametrize("name", ["a.pharaoh", "a.jsonl", "a.npz", "a.html"])
def test_align_files_cut_short_keep_the_previous_file(name, trained_model_dir, tmp_path, capsys, disk_fills):
    src = tmp_path / "src.txt"
    src.write_text("The dog sleeps.\nThe cat.\n")
    out = tmp_path / "o"
    files = {n: _previous(out / n) for n in ("a.pharaoh", "a.jsonl", "a.npz", "a.html")}
    disk_fills(name)
    assert main(["align", str(trained_model_dir), "--src-file", str(src), "--pharaoh", str(files["a.pharaoh"]),
                 "--jsonl", str(files["a.jsonl"]), "--npz", str(files["a.npz"]),
                 "--explore", str(files["a.html"])]) == 2
    _one_line_error(capsys, str(files[name]))
    assert files[name].read_text() == OLD
    _only(out, *files)


def test_align_npz_is_written_at_the_name_given(trained_model_dir, tmp_path, capsys):
    src = tmp_path / "src.txt"
    src.write_text("The dog sleeps.\n")
    assert main(["align", str(trained_model_dir), "--src-file", str(src), "--npz", str(tmp_path / "o" / "m.npz")]) == 0
    with np.load(tmp_path / "o" / "m.npz") as arrays:
        assert sorted(arrays.files) == ["attention_0", "words_0"]
    _only(tmp_path / "o", "m.npz")


def test_aer_json_cut_short_keeps_the_previous_file(tmp_path, capsys, disk_fills):
    (tmp_path / "gold").write_text("0-0 1-1\n")
    (tmp_path / "pred").write_text("0-0 1-1\n")
    out = _previous(tmp_path / "o" / "aer.json")
    disk_fills("aer.json")
    assert main(["aer", "--gold", str(tmp_path / "gold"), "--pred", str(tmp_path / "pred"), "--json", str(out)]) == 2
    _one_line_error(capsys, str(out))
    assert out.read_text() == OLD
    _only(out.parent, "aer.json")


def test_a_stream_is_written_as_it_is(tmp_path, capfd):
    """``--json /dev/stdout``: no temporary file beside a device, which could not take one."""
    (tmp_path / "links").write_text("0-0 1-1\n")
    assert main(["aer", "--gold", str(tmp_path / "links"), "--pred", str(tmp_path / "links"), "--json",
                 "/dev/stdout"]) == 0
    out = capfd.readouterr().out
    assert json.loads(out[out.index("{"):])["aer"] == 0.0


def test_explore_page_cut_short_keeps_the_previous_page(trained_model_dir, corpus_dir, tmp_path, capsys,
                                                        disk_fills):
    page = _previous(tmp_path / "o" / "page.html")
    disk_fills("page.html")
    assert main(["explore", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en"), "--max-sentences",
                 "3", "--out", str(page)]) == 2
    _one_line_error(capsys, str(page))
    assert page.read_text() == OLD
    _only(page.parent, "page.html")


def test_heatmap_files_are_atomic_and_in_the_format_their_suffix_names(tmp_path, disk_fills):
    from mt.visualization.heatmap import plot_attention

    weights = np.full((2, 3), 1 / 3)
    args = (weights, ["a", "b", "c"], ["x", "</s>"])
    for suffix, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")):
        assert plot_attention(*args, tmp_path / f"map.{suffix}").read_bytes().startswith(magic)
    _only(tmp_path, "map.png", "map.pdf", "map.svg")
    with pytest.raises(MTError, match="map.xyz"):
        plot_attention(*args, tmp_path / "map.xyz")
    _previous(tmp_path / "map.png")
    disk_fills("map.png")
    with pytest.raises(MTError, match="no space left"):
        plot_attention(*args, tmp_path / "map.png")
    assert (tmp_path / "map.png").read_text() == OLD
    _only(tmp_path, "map.png", "map.pdf", "map.svg")


def test_a_saved_record_cut_short_keeps_the_previous_record(tmp_path, disk_fills):
    from mt.analysis.compare.entries import ModelEntry
    from mt.analysis.compare.saved_systems import SavedSystem, load_systems, save_systems

    def system(hypothesis: str) -> SavedSystem:
        entry = ModelEntry("m", "/a/run/model", "gru 8", False, 10, "en", "de", 1)
        return SavedSystem(entry, "", "fp", {"beam": 1}, [hypothesis], 1.0, None, None, None, "")

    (first,) = save_systems([system("old")], tmp_path)
    disk_fills(first.name)
    with pytest.raises(MTError, match="no space left"):
        save_systems([system("new")], tmp_path)
    assert load_systems([tmp_path])[0].hypotheses == ["old"]
    _only(tmp_path, first.name)
    with gzip.open(first) as handle:  # a plain gzip file, readable as before
        assert json.load(handle)["hypotheses"] == ["old"]


def test_demo_corpus_cut_short_keeps_the_previous_files(tmp_path, disk_fills):
    from mt.data.demo_corpus import ensure_demo_corpus, write_demo_corpus

    write_demo_corpus(tmp_path, sizes=(20, 5, 5), seed=1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    disk_fills("train.en")
    with pytest.raises((OSError, MTError)):
        write_demo_corpus(tmp_path, sizes=(30, 5, 5), seed=2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary file, nothing cut
    disk_fills("SETTINGS")
    with pytest.raises((OSError, MTError)):
        ensure_demo_corpus(tmp_path, (20, 5, 5), 1)
    assert not (tmp_path / "SETTINGS").exists() and {p.name for p in tmp_path.iterdir()} == set(before)


def test_demo_plan_cut_short_keeps_the_previous_plan(tmp_path, monkeypatch, disk_fills):
    from mt.analysis import demo
    from mt.training.budget import TrainingPlan

    monkeypatch.setattr(demo, "trained_tokens_per_s", lambda path: 100.0)
    plan = _previous(tmp_path / "plan.json")
    disk_fills("plan.json")
    with pytest.raises(MTError, match="no space left"):
        demo._report_speed(TrainingPlan(5, 60.0, 5.0, 100.0, True), tmp_path, 60.0)
    assert plan.read_text() == OLD
    _only(tmp_path, "plan.json")


# -- an output is never an input, nor inside a model ------------------------------------------


def test_an_output_that_is_an_input_is_refused_in_one_line(trained_model_dir, corpus_dir, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("The dog sleeps.\n")
    link = tmp_path / "link.txt"
    link.symlink_to(text)
    model = str(trained_model_dir)
    refused = [
        ["translate", model, "--input", str(text), "-o", str(text)],
        ["translate", model, "--input", str(text), "-o", str(link)],  # the same file by another name
        ["evaluate", model, "--src", str(text), "--ref", str(text), "--output", str(text)],
        ["align", model, "--src-file", str(text), "--pharaoh", str(text)],
        ["align", model, "--src-file", str(text), "--pharaoh", str(tmp_path / "p"), "--jsonl", str(tmp_path / "p")],
        ["aer", "--gold", str(text), "--pred", str(text), "--json", str(text)],
    ]
    for args in refused:
        assert main(args) == 2, args
        _one_line_error(capsys, str(tmp_path))
        assert text.read_text() == "The dog sleeps.\n"
    page = tmp_path / "page.html"
    page.write_text("The dog sleeps.\n")
    assert main(["explore", model, "--src-file", str(page), "--out", str(page)]) == 2
    _one_line_error(capsys, str(page))
    assert page.read_text() == "The dog sleeps.\n"
    assert not (tmp_path / "p").exists()


def test_an_output_inside_the_model_or_onto_a_folder_is_refused(trained_model_dir, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in trained_model_dir.iterdir()}
    src = tmp_path / "src.txt"
    src.write_text("The dog sleeps.\n")
    model = str(trained_model_dir)
    for args in (["translate", model, "--input", str(src), "-o", str(trained_model_dir / "config.yaml")],
                 ["align", model, "--src", "The dog.", "--out", str(trained_model_dir / "m.png")],
                 ["translate", model, "--input", str(src), "-o", str(tmp_path)]):
        assert main(args) == 2, args
        _one_line_error(capsys, args[-1])
    assert {p.name: p.read_bytes() for p in trained_model_dir.iterdir()} == before


# -- folders: never one mt did not write --------------------------------------------------


@pytest.fixture(scope="module")
def small_test(corpus_dir, tmp_path_factory) -> Path:
    """The first 6 pairs of the test set (quick comparisons: the checks come first anyway)."""
    folder = tmp_path_factory.mktemp("small_test")
    for side in ("en", "de"):
        lines = (corpus_dir / f"test.{side}").read_text().splitlines(keepends=True)[:6]
        (folder / f"test.{side}").write_text("".join(lines))
    return folder


def _compare(model: Path, test: Path, out: Path, *extra: str) -> int:
    return main(["compare", str(model), "--src", str(test / "test.en"), "--ref", str(test / "test.de"),
                 "--out", str(out), "--bootstrap", "10", "--no-progress", "--max-len-a", "0", "--max-len-b", "4", *extra])


def _foreign(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine\n")
    (folder / "scores.csv").write_text("my own scores\n")
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_compare_refuses_a_folder_it_did_not_write_and_reruns_into_its_own(trained_model_dir, small_test, tmp_path,
                                                                           capsys):
    foreign = tmp_path / "mine"
    kept = _foreign(foreign)
    for force in ([], ["--force"]):
        assert _compare(trained_model_dir, small_test, foreign, *force) == 2
        _one_line_error(capsys, str(foreign), "--force", "notes.txt")
        assert {p.name: p.read_text() for p in foreign.iterdir()} == kept
    out = tmp_path / "report"
    assert _compare(trained_model_dir, small_test, out) == 0
    assert json.loads((out / "manifest.json").read_text())["kind"] == "compare report"
    (out / "scores_by_variant.csv").write_text("a stale table of an earlier run\n")
    _previous_json = (out / "results.json").read_text()
    assert _compare(trained_model_dir, small_test, out, "--beam", "2") == 0  # the same kind: no flag needed
    assert not (out / "scores_by_variant.csv").exists()  # the earlier run's table this run did not write
    assert json.loads((out / "results.json").read_text())["beam"] == 2 != json.loads(_previous_json)["beam"]
    # a report an mt before manifests wrote is its own too
    (out / "manifest.json").unlink()
    assert _compare(trained_model_dir, small_test, out) == 0


def test_compare_never_writes_into_or_over_a_model(trained_model_dir, small_test, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in trained_model_dir.iterdir()}
    for out, force in ((trained_model_dir, ["--force"]), (trained_model_dir / "report", [])):
        assert _compare(trained_model_dir, small_test, out, *force) == 2
        _one_line_error(capsys, str(out))
    assert {p.name: p.read_bytes() for p in trained_model_dir.iterdir()} == before


def test_compare_report_cut_short_keeps_the_previous_report(trained_model_dir, small_test, tmp_path, capsys,
                                                            disk_fills):
    out = tmp_path / "report"
    assert _compare(trained_model_dir, small_test, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    disk_fills("results.json")
    assert _compare(trained_model_dir, small_test, out, "--beam", "2") == 2
    _one_line_error(capsys, "results.json")
    assert (out / "results.json").read_bytes() == before["results.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(before)


def test_save_systems_refuses_a_folder_that_holds_no_records(trained_model_dir, small_test, tmp_path, capsys):
    foreign = tmp_path / "mine"
    kept = _foreign(foreign)
    assert _compare(trained_model_dir, small_test, tmp_path / "o", "--save-systems", str(foreign), "--force") == 2
    _one_line_error(capsys, str(foreign), "--save-systems")
    assert {p.name: p.read_text() for p in foreign.iterdir()} == kept and not (tmp_path / "o").exists()
    records = tmp_path / "records"
    for _ in range(2):  # a folder of records takes more (README: --systems records/ --save-systems records/)
        assert _compare(trained_model_dir, small_test, tmp_path / "o", "--save-systems", str(records)) == 0
    assert [p.name for p in records.iterdir()] == ["run.system.json.gz"]
    assert _compare(trained_model_dir, small_test, tmp_path / "o2", "--save-systems", str(tmp_path / "o2")) == 2
    _one_line_error(capsys, "--save-systems", "--out")


def test_align_out_dir_refuses_a_folder_it_did_not_write(trained_model_dir, small_test, tmp_path, capsys):
    src = tmp_path / "src.txt"
    src.write_text("The dog sleeps.\nThe cat.\nA small red car.\n")

    def align(out_dir: Path, *extra: str) -> int:
        return main(["align", str(trained_model_dir), "--src-file", str(src), "--out-dir", str(out_dir), *extra])

    foreign = tmp_path / "mine"
    kept = _foreign(foreign)
    for force in ([], ["--force"]):
        assert align(foreign, *force) == 2
        _one_line_error(capsys, str(foreign), "--out-dir", "--force")
        assert {p.name: p.read_text() for p in foreign.iterdir()} == kept
    maps = tmp_path / "maps"
    assert align(maps) == 0
    _only(maps, "00001.png", "00002.png", "00003.png", "manifest.json")
    assert align(maps, "--max-plots", "1", "--format", "svg") == 0  # its own folder: replaced by the new heatmaps
    _only(maps, "00001.svg", "manifest.json")
    # a compare report is mt's own: --force writes heatmaps into it, and keeps what is not a heatmap
    report = tmp_path / "report"
    assert _compare(trained_model_dir, small_test, report) == 0
    assert align(report) == 2
    _one_line_error(capsys, str(report), "--force")
    assert align(report, "--force") == 0
    assert (report / "00001.png").is_file() and (report / "results.json").is_file()


def test_the_demo_report_folder_is_sealed_so_mt_compare_writes_into_it_again(trained_model_dir, corpus_dir, small_test,
                                                                             tmp_path):
    from mt.analysis.demo import evaluate_models

    out = tmp_path / "demo"
    (out / "rnn_noattn").mkdir(parents=True)  # the demo trains its runs into the same folder
    (out / "rnn_noattn" / "metrics.jsonl").write_text("{}\n")
    sources = (corpus_dir / "test.en").read_text().splitlines()
    references = (corpus_dir / "test.de").read_text().splitlines()
    evaluate_models({"rnn_bahdanau": str(trained_model_dir)}, {"src": sources, "tgt": references}, out, 1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "compare report" and "results.json" in manifest["files"]
    assert any(name.startswith("alignments/") for name in manifest["files"])  # sealed after its heatmaps
    assert _compare(trained_model_dir, small_test, out) == 0
    assert (out / "rnn_noattn" / "metrics.jsonl").read_text() == "{}\n"
