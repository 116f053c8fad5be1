"""A newcomer's mistakes and surprises, each met with a line that names the fix (issue 50's items
that live below the CLI; the CLI's are in tests/test_cli.py)."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mt.config import CorpusSource, DataConfig
from mt.decoding.search import SearchConfig
from mt.errors import MTError
from mt.model_dir import corpus_of_run
from mt.presets import compose

from .conftest import TINY_TRAIN


def test_a_runs_relative_corpus_is_found_where_it_was_trained_before_here(tmp_path, monkeypatch):
    """The saved config keeps data.dir as typed (runs stay seeds of each other and of older
    records); Hydra records the folder mt train ran in, which is looked in first: a corpus/ in
    the current folder is another corpus."""
    for project in ("project", "elsewhere"):
        (tmp_path / project / "corpus").mkdir(parents=True)
    run = tmp_path / "runs" / "a"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    cwd: {tmp_path / 'project'}\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = run / "model" / "config.yaml"
    data = DataConfig(source=CorpusSource.files, dir="corpus")
    assert corpus_of_run(data, config, "give --src").dir == str(tmp_path / "project" / "corpus")
    monkeypatch.chdir(tmp_path / "project")
    assert corpus_of_run(data, config, "give --src") is data  # from where it was trained: as it is
    (run / ".hydra" / "hydra.yaml").unlink()  # no record (a run of run_training from Python): here, then above
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert corpus_of_run(data, config, "give --src").dir == str(tmp_path / "elsewhere" / "corpus")
    with pytest.raises(MTError) as lost:
        corpus_of_run(replace(data, dir="gone"), config, "give the test set with --src FILE --ref FILE")
    assert str(lost.value) == (f"{config} names the corpus folder gone, found neither where the run was trained, nor "
                               "from here, nor above the run: give the test set with --src FILE --ref FILE")
    demo = DataConfig(source=CorpusSource.demo, dir="data/demo")
    assert corpus_of_run(demo, config, "") is demo  # generated where it is missing


def test_heatmap_labels_show_where_a_word_is_cut():
    from mt.visualization.heatmap import _labels

    assert _labels(["▁T", "wo", "▁dogs", "</s>"]) == ["T", "·wo", "dogs", "</s>"]
    assert _labels(["▁", "Two"]) == ["▁", "·Two"]
    assert _labels(["Two", "dogs"]) == ["Two", "dogs"]  # words: as they are


def test_one_sentence_heatmap_over_words_is_drawn_over_words(trained_model_dir, tmp_path):
    import json

    from mt.analysis.align_files import draw_sentence
    from mt.export import open_translator

    translator = open_translator(str(trained_model_dir), "cpu", "fp32")
    source = "The small dog sees the woman ."
    draw_sentence(translator, source, tmp_path / "pieces.png", json_path=tmp_path / "pieces.json")
    draw_sentence(translator, source, tmp_path / "words.png", json_path=tmp_path / "words.json", words=True)
    assert (tmp_path / "pieces.png").read_bytes() != (tmp_path / "words.png").read_bytes()
    drawn = json.loads((tmp_path / "words.json").read_text())
    assert drawn["src_words"] == source.split()
    assert len(drawn["word_attention"]) == len(drawn["tgt_words"])
    assert all(len(row) == len(source.split()) for row in drawn["word_attention"])
    with pytest.raises(MTError, match="choose one"):
        draw_sentence(translator, source, tmp_path / "x.png", words=True, all_heads=True)


def test_compare_prints_a_table_a_terminal_holds_and_marks_intervals_of_few_sentences():
    from types import SimpleNamespace

    from mt.analysis.compare.comparison import BucketResult
    from mt.analysis.compare.report import SCORE_COLUMNS, format_by_length, format_scores

    names = ["rnn_noattn (gru 256)", "rnn_bahdanau (gru 256, bahdanau additive)"]
    rows = [{c: None for c in SCORE_COLUMNS} | {"model": n, "parameters": 4_000_000, "train_seconds": 1234.5,
                                                 "test_bleu": 30.12, "bleu_95ci": "30.12 (+-1.10)", "test_chrf": 55.5}
            for n in names]
    rows[1]["p_value_vs_baseline"] = 0.0123
    comparison = SimpleNamespace(rows=lambda: rows, entries=[SimpleNamespace(name=n) for n in names],
                                 baseline=names[0], buckets=[
                                     BucketResult("1-10", 2, {n: 20.0 for n in names}, {names[1]: 1.0},
                                                  {names[1]: -3.0}, {names[1]: 4.0}),
                                     BucketResult("11+", 400, {n: 20.0 for n in names}, {names[1]: 1.0},
                                                  {names[1]: 0.5}, {names[1]: 1.5})])
    scores = format_scores(comparison)
    assert max(len(line) for line in scores.splitlines()) <= 130, scores
    assert "aer" not in scores.splitlines()[0]  # no model has it: no column
    assert "0.0123" in scores and "test_chrf" in scores
    by_length = format_by_length(comparison).splitlines()
    assert by_length[:2] == [f"#1 {names[0]}", f"#2 {names[1]}"]  # long names head the columns as #1, #2
    assert "#2 - #1" in by_length[2] and max(len(line) for line in by_length[2:-1]) <= 80
    assert by_length[4].endswith("[-3.00, +4.00] *") and by_length[5].endswith("[+0.50, +1.50]")
    assert by_length[-1].startswith("* fewer than 30 sentences")


@pytest.mark.parametrize("override, said", [
    ("train.max_second=5", "train.max_second is not a setting: did you mean train.max_seconds?"),
    ("+train.max_second=5", "train.max_second is not a setting: did you mean train.max_seconds?"),
    ("++model.atention.score=dot", "model.atention.score is not a setting: did you mean model.attention.score?"),
    ("max_seconds=3", "max_seconds is not a setting: did you mean train.max_seconds?"),
    ("+colour=red", "colour is not a setting: see mt train --help for the settings"),
])
def test_a_misspelt_key_stops_with_the_nearest_keys_with_or_without_plus(override, said):
    from mt.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        compose([*TINY_TRAIN, override])
    assert str(refused.value).startswith(said)
    assert "would be ignored" in str(refused.value)


def test_every_schema_key_and_hydras_own_pass():
    from mt.presets import check_override_keys, setting_keys

    check_override_keys([f"{key}=1" for key in setting_keys()])
    check_override_keys(["hydra.run.dir=runs/a", "hydra/launcher=basic", "model=transformer", "-m", "--config-dir",
                         "data.demo_sizes.0=100"])  # an item of a list


def test_every_command_that_takes_a_model_takes_its_run_folder(trained_model_dir, tmp_path):
    from mt.export import open_translator
    from mt.export.int8 import export_int8
    from mt.model_dir import load_model_dir

    run = trained_model_dir.parent
    assert (run / "model") == trained_model_dir and not (run / "config.yaml").exists()
    assert load_model_dir(run).config == load_model_dir(trained_model_dir).config
    by_run = open_translator(str(run), "cpu", "fp32").translate(["The dog sleeps ."])[0].text
    assert by_run == open_translator(str(trained_model_dir), "cpu", "fp32").translate(["The dog sleeps ."])[0].text
    out = export_int8(run, tmp_path / "int8")
    assert open_translator(str(out), "cpu").languages == ("en", "de")


def test_swapped_test_files_are_refused_by_every_command_that_reads_them(trained_model_dir, corpus_dir, tmp_path,
                                                                         capsys):
    from mt.cli.main import main

    src, ref = corpus_dir / "test.en", corpus_dir / "test.de"
    said = (f"{ref} looks like 'de' text but the model's source language is 'en' (en-de): pass the en file, "
            "or --force-language if it really is en")
    for argv in (["evaluate", str(trained_model_dir), "--src", str(ref), "--ref", str(src)],
                 ["translate", str(trained_model_dir), "--input", str(ref)],
                 ["align", str(trained_model_dir), "--src-file", str(ref), "--pharaoh", str(tmp_path / "a.txt")]):
        assert main(argv) == 2, argv
        assert capsys.readouterr().err.strip() == f"error: {said}", argv
    assert main(["evaluate", str(trained_model_dir), "--src", str(src), "--ref", str(src)]) == 2
    assert "the model's reference language is 'de'" in capsys.readouterr().err
    assert main(["evaluate", str(trained_model_dir), "--src", str(ref), "--ref", str(src), "--beam", "1",
                 "--force-language"]) == 0  # the rare user who means it
    assert "BLEU" in capsys.readouterr().out


def test_every_searching_command_shows_one_default_beam(capsys):
    from mt.cli.main import main

    for command in ("translate", "evaluate", "align", "compare", "explore", "serve", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        assert re.search(r"--beam \w+ beam size[^()]*\(default 4\)", shown), command


def test_one_sentence_heatmap_over_words_from_the_command_line(trained_model_dir, tmp_path, capsys):
    import json

    from mt.cli.main import main

    assert main(["align", str(trained_model_dir.parent), "--src", "The small dog sleeps .", "--words", "--out",
                 str(tmp_path / "a.png"), "--json", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["src_words"] == ["The", "small", "dog", "sleeps", "."]


def test_a_runs_saved_config_trains_again_as_a_config_file(trained_model_dir):
    from mt.config import ExperimentConfig, load_yaml
    from mt.presets import overrides_from_file

    saved = load_yaml(trained_model_dir / "config.yaml", ExperimentConfig)
    assert compose(overrides_from_file(trained_model_dir / "config.yaml")) == saved


def test_a_config_file_with_a_misspelt_key_or_bad_yaml_stops(tmp_path):
    from mt.errors import ConfigError
    from mt.presets import overrides_from_file

    (tmp_path / "my.yaml").write_text("defaults:\n  - model: transformer\ntrain:\n  max_seconds: 60\n"
                                      "data:\n  dir: 'my corpus, 2'\n")
    assert overrides_from_file(tmp_path / "my.yaml") == ["model=transformer", "train.max_seconds=60",
                                                          "data.dir='my corpus, 2'"]
    assert compose(overrides_from_file(tmp_path / "my.yaml")).data.dir == "my corpus, 2"
    (tmp_path / "bad.yaml").write_text("train: [1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line 2 is not valid YAML"):
        overrides_from_file(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("train:\n  max_second: 5\n")
    with pytest.raises(ConfigError, match="did you mean train.max_seconds"):
        compose(overrides_from_file(tmp_path / "typo.yaml"))


def test_mt_train_takes_a_config_file_and_a_failed_start_leaves_no_run_folder(tmp_path):
    from .conftest import run_mt

    (tmp_path / "my.yaml").write_text("data:\n  source: files\n  dir: missing_corpus\n")
    result = run_mt("train", "my.yaml", "train.max_steps=1", cwd=tmp_path)
    assert result.returncode == 2
    assert "missing_corpus is not a directory: point data.dir at the corpus folder" in result.stderr
    assert not (tmp_path / "runs").exists()  # Hydra's folder for the run, its date folder and runs/: gone
    (tmp_path / "mine").mkdir()
    assert run_mt("train", "--config", "my.yaml", "hydra.run.dir=mine", cwd=tmp_path).returncode == 2
    assert (tmp_path / "mine").is_dir()  # a folder the user named, there before: left
    # Named with ++, or in the config file (quoted there), inside folders of the user's: only what was made goes.
    (tmp_path / "work" / "old").mkdir(parents=True)
    (tmp_path / "work" / "old" / "train.log").write_text("my earlier log\n")
    (tmp_path / "named.yaml").write_text("data:\n  source: files\n  dir: missing_corpus\nhydra:\n  run:\n"
                                         "    dir: work/old\n")
    assert run_mt("train", "named.yaml", cwd=tmp_path).returncode == 2
    assert run_mt("train", "my.yaml", "++hydra.run.dir=work/new/x", cwd=tmp_path).returncode == 2
    assert (tmp_path / "work" / "old" / "train.log").is_file() and not (tmp_path / "work" / "new").exists()
    today = tmp_path / "runs" / time.strftime("%Y-%m-%d")
    today.mkdir(parents=True)  # made by the user, empty
    assert run_mt("train", "my.yaml", cwd=tmp_path).returncode == 2
    assert today.is_dir() and list(today.iterdir()) == []


def test_a_named_folder_holding_a_run_is_refused_before_its_record_is_touched(trained_model_dir, tmp_path):
    import shutil

    from .conftest import run_mt

    run = Path(shutil.copytree(trained_model_dir.parent, tmp_path / "run"))
    record = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = run_mt("train", "model=rnn_noattn", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 2 and f"{run} already holds a training run" in result.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == record


def test_nbest_wider_than_the_default_beam_widens_it_and_a_given_beam_is_kept():
    from mt.cli.flags import search_config
    from mt.cli.translate import parser
    from mt.errors import ConfigError

    assert search_config(parser().parse_args(["M"]), nbest=1).beam == 4
    assert search_config(parser().parse_args(["M"]), nbest=6).beam == 6
    assert search_config(parser().parse_args(["M", "--beam", "2"]), nbest=1).beam == 2
    with pytest.raises(ConfigError, match="--nbest 6 needs a beam at least as wide"):
        search_config(parser().parse_args(["M", "--beam", "2"]), nbest=6)


def test_the_explorers_bar_counts_the_sentences_once_per_model(trained_model_dir, corpus_dir, tmp_path, capsys):
    import shutil

    from mt.analysis.explore import explore_models

    models = [shutil.copytree(trained_model_dir, tmp_path / name / "model") for name in ("a", "b")]
    explore_models([str(m) for m in models], str(corpus_dir / "test.en"), None, None, str(tmp_path / "page.html"),
                   max_sentences=6, search=SearchConfig(), device="cpu", precision="fp32")
    bar = capsys.readouterr().err.replace("\r", "\n")
    assert re.search(r"exploring .+? \(1/2\): 100%\|[^|]*\| 6/6", bar) and re.search(r"\(2/2\): 100%.*6/6", bar), bar
    assert "/12" not in bar


def test_mt_serve_loads_a_run_folder_as_its_model(trained_model_dir):
    from mt.serving.server import load_models

    (served,) = load_models([("run", str(trained_model_dir.parent))], "cpu", "fp32", search_process=False)
    assert (served.source, served.target) == ("en", "de")
    assert served.directory == str(trained_model_dir.resolve())


@pytest.mark.parametrize("name, refused", [("test.de", True), ("test.DE.gz", True), ("test.EN", False),
                                           ("test.lc", False), ("test.tok", False), ("corpus.de-en.en", False),
                                           ("test.txt", False)])
def test_only_a_language_code_as_the_last_suffix_names_a_language(name, refused):
    from mt.data.corpus import check_file_language
    from mt.errors import DataError

    if refused:
        with pytest.raises(DataError, match="looks like 'de' text"):
            check_file_language(name, "en", "source", "en-de")
    else:
        check_file_language(name, "en", "source", "en-de")


def test_config_file_strings_keep_backslashes_and_quotes(tmp_path):
    from mt.presets import overrides_from_file

    (tmp_path / "c.yaml").write_text("cache_dir: 'bs\\one it''s\\'\n")  # YAML: bs\one it's\
    assert compose(overrides_from_file(tmp_path / "c.yaml")).cache_dir == "bs\\one it's\\"


def test_a_setting_the_architecture_does_not_read_is_said(tmp_path, caplog, corpus_dir):
    """Kept for a sweep over both architectures (model.heads=8 for all), but a single run says so."""
    import logging

    assert compose(["model=transformer", "model.emb_dim=512"]).model.unread() == ["model.emb_dim=512"]
    assert compose(["model=rnn_bahdanau", "model.heads=8"]).model.unread() == ["model.heads=8"]
    assert compose(["model=rnn_bahdanau", "model.emb_dim=64"]).model.unread() == []
    from mt.training.pipeline import run_training

    # and a setting of the linear schedule under another one (model=transformer sets train.decay_from)
    cfg = compose([*TINY_TRAIN, "train.max_steps=1", f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'c'}",
                   "train.decay_from=0.5"])
    with caplog.at_level(logging.WARNING, logger="mt.train"):
        run_training(cfg, tmp_path / "run", progress="off")
    assert "model.ff_dim=32: not read by the RNN models (kept for a sweep over architectures)" in caplog.text
    assert "train.decay_from=0.5: not read by schedule=constant" in caplog.text
