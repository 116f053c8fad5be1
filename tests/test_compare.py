"""mt compare: several models on one test set, with significance, by length, side by side."""

import csv
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mt.cli.main import main
from mt.errors import MTError
from mt.presets import compose

from .conftest import train_tiny


@pytest.fixture(scope="module")
def noattn_model_dir(tmp_path_factory, corpus_dir) -> Path:
    return train_tiny(tmp_path_factory.mktemp("noattn"), corpus_dir, "model=rnn_noattn") / "model"


def test_compare_writes_tables_plots_and_significance(trained_model_dir, noattn_model_dir, corpus_dir, tmp_path,
                                                      capsys):
    out = tmp_path / "cmp"
    # The attention model first: the baseline is still the one without attention.
    assert main(["compare", str(trained_model_dir.parent), str(noattn_model_dir), "--src", str(corpus_dir / "test.en"),
                 "--ref", str(corpus_dir / "test.de"), "--out", str(out), "--bootstrap", "50", "--beam", "2",
                 "--gold", str(corpus_dir / "test.align"), "--buckets", "5,10", "--no-progress",
                 "--explore", str(out / "explore.html")]) == 0
    printed = capsys.readouterr().out
    assert "baseline rnn_noattn" in printed and "BLEU by source length" in printed
    for name in ("scores.csv", "scores.md", "bleu_by_length.csv", "bleu_by_length.png", "bleu_by_length.svg",
                 "attention_side_by_side.png", "attention_side_by_side.svg", "translations.txt", "results.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 100, name
    assert (out / "attention_side_by_side.svg").read_text().lstrip().startswith("<?xml")
    rows = {r["model"]: r for r in csv.DictReader((out / "scores.csv").open())}
    assert set(rows) == {"rnn_bahdanau", "rnn_noattn"}
    attn = rows["rnn_bahdanau"]
    base = rows["rnn_noattn"]
    assert 0 <= float(attn["p_value_vs_baseline"]) <= 1 and base["p_value_vs_baseline"] == ""
    assert float(attn["attention_entropy"]) > 0 and base["attention_entropy"] == ""
    assert 0 <= float(attn["aer"]) <= 100 and base["aer"] == ""
    assert int(attn["parameters"]) > int(base["parameters"]) > 0
    assert float(attn["train_seconds"]) > 0 and float(attn["tokens_per_s"]) > 0
    assert 1 <= int(attn["best_epoch"]) <= int(attn["epochs"]) and attn["seed"] != ""
    assert float(attn["sentences_per_s"]) > 0 and "+-" in attn["bleu_95ci"]
    results = json.loads((out / "results.json").read_text())
    assert results["baseline"] == "rnn_noattn" and results["sentences"] == 20 and results["beam"] == 2
    by_length = list(csv.DictReader((out / "bleu_by_length.csv").open()))
    assert {r["bucket"] for r in by_length} <= {"1-5", "6-10", "11+"} and by_length[-1]["bucket"] == "11+"
    assert sum(int(r["sentences"]) for r in by_length) == 20
    for r in by_length:
        gap = next(k for k in r if k.startswith("gap "))
        low, high = float(r[gap.replace("gap ", "gap_low ")]), float(r[gap.replace("gap ", "gap_high ")])
        assert low <= high
    assert "| model |" in (out / "scores.md").read_text()
    data = _page_data(out / "explore.html")  # the mt explore page of the same models and sentences
    assert [m["name"] for m in data["models"]] == ["rnn_bahdanau", "rnn_noattn"] and len(data["sentences"]) == 20
    assert data["has_gold"] and data["sentences"][0]["gold"]
    # RESULTS' study tables are made from these CSVs by studies/multi30k_attention/tables.py.
    script = [sys.executable, "studies/multi30k_attention/tables.py", str(out), "--min-sentences", "1"]
    root = Path(__file__).parents[1]
    tables = subprocess.run(script, capture_output=True, text=True, check=True, cwd=root).stdout
    runs_part, length_part = tables.split("<!-- m30k-study:length -->")
    run_rows = {line.split(" | ")[0].lstrip("| "): line for line in runs_part.splitlines()
                if line.startswith("| ") and "---" not in line}
    assert set(run_rows) == {"model", "no attention", "Bahdanau"}
    assert "(baseline)" in run_rows["no attention"] and f"{float(attn['test_bleu']):.2f} (+-" in run_rows["Bahdanau"]
    length_header = next(line for line in length_part.splitlines() if line.startswith("| model"))
    assert length_header.count("gap [95%]") == len(by_length)  # every bucket with a sentence
    # --write replaces the tables between their markers and keeps the prose around them.
    report = tmp_path / "RESULTS.md"
    report.write_text("Intro.\n<!-- m30k-study:runs -->\nold\n<!-- /m30k-study:runs -->\nMiddle.\n"
                      "<!-- m30k-study:length -->\n<!-- /m30k-study:length -->\nEnd.\n")
    subprocess.run([*script, "--write", str(report)], check=True, cwd=root, capture_output=True)
    written = report.read_text()
    assert written.startswith("Intro.\n") and "\nMiddle.\n" in written and written.endswith("End.\n")
    assert "old" not in written and written.count("| no attention |") == 2  # the runs and the length table
    # --against: a second compare of the same models against the attention model adds its p-values.
    other = tmp_path / "cmp-attn"
    assert main(["compare", str(trained_model_dir.parent), str(noattn_model_dir), "--src", str(corpus_dir / "test.en"),
                 "--ref", str(corpus_dir / "test.de"), "--out", str(other), "--bootstrap", "50", "--beam", "2",
                 "--baseline", str(trained_model_dir), "--no-progress"]) == 0  # its directory, as given or not
    p_attn = next(r for r in csv.DictReader((other / "scores.csv").open()) if r["model"] == "rnn_noattn")
    both = subprocess.run([*script, "--against", str(other)], capture_output=True, text=True, check=True,
                          cwd=root).stdout.split("<!-- m30k-study:length -->")[0]
    cells = {line.split(" | ")[0].lstrip("| "): [c.strip() for c in line.strip("| ").split(" | ")]
             for line in both.splitlines() if line.startswith("| ") and "---" not in line}
    column = cells["model"].index("p vs Bahdanau (seed 1)")
    assert cells["model"][column - 1] == "p vs no attention"
    assert cells["Bahdanau"][column] == "(baseline)" and cells["Bahdanau"][column - 1] != "(baseline)"
    assert cells["no attention"][column] == f"{float(p_attn['p_value_vs_baseline']):.3f}"
    report.write_text("no markers\n")
    failed = subprocess.run([*script, "--write", str(report)], check=False, cwd=root, capture_output=True, text=True)
    assert failed.returncode != 0 and "m30k-study:runs" in failed.stderr and report.read_text() == "no markers\n"


def _page_data(path: Path) -> dict:
    html = path.read_text()
    start = html.index('<script id="mt-data" type="application/json">') + len('<script id="mt-data" type="application/json">')
    return json.loads(html[start:html.index("</script>", start)])


def test_align_files_can_write_the_explorer_page(trained_model_dir, corpus_dir, tmp_path):
    page = tmp_path / "align.html"
    assert main(["align", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en"), "--ref-file",
                 str(corpus_dir / "test.de"), "--explore", str(page)]) == 0
    data = _page_data(page)
    assert len(data["models"]) == 1 and data["has_ref"] and not data["has_gold"]
    sentence = data["sentences"][0]
    assert sentence["models"][0]["forced"]["tgt"] == (corpus_dir / "test.de").read_text().splitlines()[0]
    assert main(["align", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en"),
                 "--explore", str(tmp_path / "page.png")]) == 2


def test_compare_finds_models_below_a_folder_and_keeps_names_apart(trained_model_dir, corpus_dir, tmp_path, capsys):
    sweep = tmp_path / "multirun"
    for run in ("0", "1"):  # two runs of one preset, as a sweep writes them
        shutil.copytree(trained_model_dir.parent, sweep / run, ignore=shutil.ignore_patterns("checkpoints"))
    out = tmp_path / "cmp"
    assert main(["compare", str(sweep), "--src", str(corpus_dir / "test.en"), "--ref", str(corpus_dir / "test.de"),
                 "--out", str(out), "--bootstrap", "20", "--no-progress"]) == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == 2 and len({r["model"] for r in rows}) == 2
    assert {Path(r["model_dir"]).parent.name for r in rows} == {"0", "1"}
    # Same weights, same search: the same translations, so every bucket's gap is exactly 0
    # and no resample shows a gain (sacrebleu's own p-value follows MultEval, which never
    # calls a zero difference chance, so it is not asserted here).
    assert rows[0]["test_bleu"] == rows[1]["test_bleu"]
    # Runs of one setting make one row of the variant table: mean and spread over them.
    (variant,) = list(csv.DictReader((out / "scores_by_variant.csv").open()))
    assert variant["seeds"] == "2" and float(variant["bleu_std"]) == 0.0
    assert float(variant["bleu_mean"]) == float(rows[0]["test_bleu"])
    for r in csv.DictReader((out / "bleu_by_length.csv").open()):
        gaps = [float(v) for k, v in r.items() if k.startswith(("gap", "gap_low", "gap_high"))]
        assert gaps == [0.0] * 3 and float(next(v for k, v in r.items() if k.startswith("p "))) == 1.0


def test_compare_on_the_models_own_test_split(trained_model_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(trained_model_dir), "--split", "test", "--out", str(out), "--no-progress",
                 "--bootstrap", "10"]) == 0
    assert "the test split" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["sentences"] == 20


def test_compare_errors_name_the_problem(trained_model_dir, corpus_dir, tmp_path, capsys):
    src, ref = str(corpus_dir / "test.en"), str(corpus_dir / "test.de")
    cases = [
        (["compare", str(tmp_path / "nowhere"), "--src", src, "--ref", ref, "--out", str(tmp_path)], "does not exist"),
        (["compare", str(tmp_path), "--src", src, "--ref", ref, "--out", str(tmp_path / "o")], "holds no model"),
        (["compare", str(trained_model_dir), "--src", ref, "--ref", src, "--out", str(tmp_path / "o")],
         "looks like 'de' text"),
        (["compare", str(trained_model_dir), "--src", src, "--ref", str(corpus_dir / "train.de"),
          "--out", str(tmp_path / "o")], "must pair line by line"),
        (["compare", str(trained_model_dir), "--src", src, "--ref", ref, "--out", str(tmp_path / "o"),
          "--baseline", "nope", "--no-progress"], "--baseline 'nope' is none of the models"),
        (["compare", str(trained_model_dir), "--src", src, "--out", str(tmp_path / "o")], "give both --src and --ref"),
        (["compare", str(trained_model_dir), "--src", src, "--ref", ref, "--out", str(tmp_path / "o"),
          "--buckets", "20,10"], "--buckets"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)


def test_paired_bootstrap_is_seeded_and_finds_a_real_gain():
    from mt.evaluation.significance import gap_interval, paired_bootstrap

    refs = [f"the cat number {i} sat on the mat today" for i in range(60)]
    good = list(refs)
    bad = [f"a dog {i} stood" for i in range(60)]
    first = paired_bootstrap({"bad": bad, "good": good}, refs, "bad", samples=200, seed=3)
    again = paired_bootstrap({"bad": bad, "good": good}, refs, "bad", samples=200, seed=3)
    assert first == again
    assert first["good"].p_value < 0.01 and first["bad"].p_value is None
    low, high, p = gap_interval(good, bad, refs, 200, 3)
    assert 0 < low <= high and p == 0.0
    # No difference: the interval straddles zero.
    low, high, p = gap_interval(good[:30] + bad[30:], bad[:30] + good[30:], refs, 200, 3)
    assert low < 0 < high


def test_find_model_dirs_rejects_what_is_not_a_model(tmp_path):
    from mt.analysis.compare.entries import find_model_dirs

    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "run" / "model" / "config.yaml").write_text("x: 1\n")
    with pytest.raises(MTError, match="holds no model"):
        find_model_dirs([tmp_path / "run"])


def test_training_time_is_the_whole_run_even_across_resumes_and_mid_epoch_validations(tmp_path):
    from mt.analysis.compare.entries import _run_record

    run = tmp_path / "run"
    run.mkdir()
    old = [  # written before `elapsed` existed: two validations in epoch 1, then epoch 2
        {"epoch": 1, "seconds": 40.0, "valid_bleu": 1.0, "tokens_per_s": 100.0},
        {"epoch": 1, "seconds": 90.0, "valid_bleu": 2.0, "tokens_per_s": 100.0},
        {"epoch": 2, "seconds": 80.0, "valid_bleu": 3.0, "tokens_per_s": 300.0},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    record = _run_record(run)
    assert record["train_seconds"] == 170.0 and record["valid_bleu"] == 3.0 and record["tokens_per_s"] == 100.0
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"epoch": 3, "seconds": 10.0, "elapsed": 400.0, "valid_bleu": 2.5}) + "\n")
    record = _run_record(run)
    assert record["train_seconds"] == 400.0
    assert record["epochs"] == 3 and record["best_epoch"] == 2  # stopped at 3, the model kept is epoch 2's


def test_the_model_kept_is_the_one_the_trainer_marked_best_whatever_its_metric(tmp_path):
    """A run that kept models by chrF (or loss) reports the kept model's epoch and BLEU, not
    the epoch of the highest BLEU."""
    from mt.analysis.compare.entries import _run_record

    run = tmp_path / "run"
    run.mkdir()
    rows = [
        {"epoch": 1, "valid_bleu": 10.0, "valid_chrf": 30.0, "best": True, "elapsed": 10.0},
        {"epoch": 2, "valid_bleu": 14.0, "valid_chrf": 35.0, "best": True, "elapsed": 20.0},
        {"epoch": 3, "valid_bleu": 15.0, "valid_chrf": 34.0, "best": False, "elapsed": 30.0},
        {"epoch": 4, "valid_bleu": 13.0, "valid_chrf": 33.0, "best": False, "elapsed": 40.0},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = _run_record(run)
    assert (record["epochs"], record["best_epoch"], record["valid_bleu"]) == (4, 2, 14.0)


def test_the_median_seed_stands_for_a_variant():
    from mt.analysis.compare.entries import ModelEntry, median_seed, seed_groups
    from mt.evaluation.metrics import Scores

    def entry(name: str, variant: str = "gru 128, no attention") -> ModelEntry:
        return ModelEntry(name, "/x", variant, False, 1, "en", "de", 1)

    entries = [entry("rnn_noattn seed 1"), entry("rnn_noattn seed 2"), entry("rnn_noattn seed 3"),
               entry("rnn_bahdanau seed 1", "gru 128, bahdanau additive")]
    bleu = {"rnn_noattn seed 1": 15.8, "rnn_noattn seed 2": 11.4, "rnn_noattn seed 3": 15.1,
            "rnn_bahdanau seed 1": 27.0}
    scores = {n: Scores(b, 0.0, 10, "", "") for n, b in bleu.items()}
    groups = seed_groups(entries)
    assert [len(m) for m in groups.values()] == [3, 1]
    assert median_seed(groups[("rnn_noattn", "gru 128, no attention")], scores).name == "rnn_noattn seed 3"
    assert median_seed(entries[:2], scores).name == "rnn_noattn seed 2"  # even count: the lower middle


def _scores(out: Path) -> dict[str, dict]:
    return {r["model"]: r for r in csv.DictReader((out / "scores.csv").open())}


def test_saved_systems_stand_in_for_models_that_are_gone(trained_model_dir, noattn_model_dir, corpus_dir, tmp_path,
                                                         capsys):
    """A study longer than a session keeps each model's translations as a record; a later
    mt compare over records and models gives the figures one over the models would."""
    src, ref = str(corpus_dir / "test.en"), str(corpus_dir / "test.de")
    common = ["--src", src, "--ref", ref, "--bootstrap", "50", "--beam", "2", "--no-progress"]
    records = tmp_path / "records"
    assert main(["compare", str(trained_model_dir), str(noattn_model_dir), *common, "--out", str(tmp_path / "both"),
                 "--save-systems", str(records)]) == 0
    files = sorted(p.name for p in records.iterdir())
    assert len(files) == 2 and all(f.endswith(".system.json.gz") for f in files)  # both run folders are "run"
    # The attention model now only as its record, beside the no-attention model translated again.
    attn_record = next(p for p in records.iterdir()
                       if json.loads(gzip.decompress(p.read_bytes()))["entry"]["preset"] == "rnn_bahdanau")
    capsys.readouterr()
    assert main(["compare", str(noattn_model_dir), *common, "--systems", str(attn_record),
                 "--out", str(tmp_path / "mixed")]) == 0
    assert "read from --systems records" in capsys.readouterr().out
    both, mixed = _scores(tmp_path / "both"), _scores(tmp_path / "mixed")
    assert set(both) == set(mixed) == {"rnn_bahdanau", "rnn_noattn"}
    for name in both:
        for column in ("test_bleu", "test_chrf", "p_value_vs_baseline", "bleu_95ci", "parameters", "attention_entropy",
                       "valid_bleu", "train_seconds", "seed", "epochs", "best_epoch"):
            assert both[name][column] == mixed[name][column], (name, column)
    by_length = [list(csv.DictReader((tmp_path / d / "bleu_by_length.csv").open())) for d in ("both", "mixed")]
    assert by_length[0] == by_length[1] and len(by_length[0]) >= 2
    # The side-by-side figure still has the attention model's panel: its record keeps that sentence.
    assert (tmp_path / "mixed" / "attention_side_by_side.png").is_file()
    assert json.loads((tmp_path / "mixed" / "results.json").read_text())["from_records"] == {
        "rnn_bahdanau": str(attn_record.resolve())}
    # Records alone, on the models' own test split (the record carries the model's config).
    assert main(["compare", "--systems", str(records), "--split", "test", "--bootstrap", "50", "--beam", "2",
                 "--no-progress", "--out", str(tmp_path / "records_only")]) == 0
    only = _scores(tmp_path / "records_only")
    assert {n: r["test_bleu"] for n, r in only.items()} == {n: r["test_bleu"] for n, r in both.items()}
    # A record of a model that is given too is not counted twice.
    capsys.readouterr()
    assert main(["compare", str(trained_model_dir), str(noattn_model_dir), *common, "--systems", str(records),
                 "--out", str(tmp_path / "again")]) == 0
    assert "translated again" in capsys.readouterr().err
    assert set(_scores(tmp_path / "again")) == {"rnn_bahdanau", "rnn_noattn"}


def test_saved_systems_are_refused_where_they_do_not_fit(trained_model_dir, corpus_dir, tmp_path, capsys):
    src, ref = str(corpus_dir / "test.en"), str(corpus_dir / "test.de")
    records = tmp_path / "records"
    assert main(["compare", str(trained_model_dir), "--src", src, "--ref", ref, "--bootstrap", "10", "--no-progress",
                 "--out", str(tmp_path / "o"), "--save-systems", str(records)]) == 0
    (record,) = records.iterdir()
    shorter = tmp_path / "short.en"
    shorter.write_text("".join((corpus_dir / "test.en").read_text().splitlines(keepends=True)[:10]))
    shorter_ref = tmp_path / "short.de"
    shorter_ref.write_text("".join((corpus_dir / "test.de").read_text().splitlines(keepends=True)[:10]))
    corrupt = tmp_path / "bad" / "x.system.json.gz"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"not gzip")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--systems", str(record), "--src", str(shorter), "--ref", str(shorter_ref)], "another test set"),
        (["--systems", str(record), "--src", src, "--ref", ref, "--beam", "3"], "other search settings (beam=4 there, 3"),
        (["--systems", str(corrupt), "--src", src, "--ref", ref], "is not a record written by mt compare"),
        (["--systems", str(empty), "--src", src, "--ref", ref], "holds no .system.json.gz file"),
        (["--systems", str(tmp_path / "nowhere"), "--src", src, "--ref", ref], "does not exist"),
        (["--src", src, "--ref", ref], "no models"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["compare", *args, "--out", str(tmp_path / "o2"), "--no-progress"]) == 2, message
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_record_never_replaces_another_models_record(tmp_path):
    from mt.analysis.compare.entries import ModelEntry
    from mt.analysis.compare.saved_systems import SavedSystem, load_systems, save_systems

    def system(model_dir: str, seed: int) -> SavedSystem:
        entry = ModelEntry("rnn_noattn", model_dir, "gru 8, no attention", False, 10, "en", "de", seed,
                           preset="rnn_noattn")
        return SavedSystem(entry, "", "f" * 64, {"beam": 1}, ["a b"], 1.0, None, None, None, "")

    first = save_systems([system("/a/run/model", 1)], tmp_path)
    second = save_systems([system("/b/run/model", 2)], tmp_path)  # same run folder name, another model
    again = save_systems([system("/a/run/model", 1)], tmp_path)   # the same model: its record is replaced
    assert first == again and first != second and len(list(tmp_path.iterdir())) == 2
    loaded = load_systems([tmp_path])
    assert sorted(s.entry.seed for s in loaded) == [1, 2] and all(s.hypotheses == ["a b"] for s in loaded)


def test_runs_of_one_preset_are_named_by_setting_and_seed():
    from mt.analysis.compare.entries import ModelEntry, _unique_names, seed_groups

    def entry(variant: str, seed: int, folder: str) -> ModelEntry:
        return ModelEntry("x", f"runs/{folder}/model", variant, True, 1, "en", "de", seed, preset="rnn_bahdanau")

    entries = [entry(v, seed, f"{v}_{seed}") for v in ("softmax", "sparsemax") for seed in (1, 2)]
    _unique_names(entries)
    assert [e.name for e in entries] == ["rnn_bahdanau (softmax) seed 1", "rnn_bahdanau (softmax) seed 2",
                                         "rnn_bahdanau (sparsemax) seed 1", "rnn_bahdanau (sparsemax) seed 2"]
    assert [len(m) for m in seed_groups(entries).values()] == [2, 2]
    twins = [entry("softmax", 1, "a"), entry("softmax", 1, "b")]  # nothing tells them apart but the folder
    _unique_names(twins)
    assert [e.name for e in twins] == ["rnn_bahdanau [a]", "rnn_bahdanau [b]"]


def test_the_length_plot_draws_a_variant_once_with_its_seeds_range(tmp_path):
    from types import SimpleNamespace

    from mt.analysis.compare.comparison import BucketResult
    from mt.analysis.compare.entries import ModelEntry
    from mt.analysis.compare.report import _length_series
    from mt.visualization.curves import plot_bleu_by_length

    def entry(name: str, variant: str, seed: int) -> ModelEntry:
        return ModelEntry(name, "/x", variant, variant != "none", 1, "en", "de", seed)

    entries = [entry("rnn_noattn seed 1", "none", 1), entry("rnn_noattn seed 2", "none", 2),
               entry("rnn_noattn seed 3", "none", 3), entry("rnn_bahdanau", "additive", 1)]
    buckets = [BucketResult("1-10", 5, {"rnn_noattn seed 1": 20.0, "rnn_noattn seed 2": 26.0,
                                        "rnn_noattn seed 3": 23.0, "rnn_bahdanau": 35.0}),
               BucketResult("11+", 3, {"rnn_noattn seed 1": 10.0, "rnn_noattn seed 2": 12.0,
                                       "rnn_noattn seed 3": 17.0, "rnn_bahdanau": 30.0})]
    series, spread = _length_series(SimpleNamespace(entries=entries, buckets=buckets))
    assert series == {"rnn_noattn (3 seeds)": [23.0, 13.0], "rnn_bahdanau (1 seed)": [35.0, 30.0]}
    assert spread == {"rnn_noattn (3 seeds)": ([20.0, 10.0], [26.0, 17.0])}
    one_each = SimpleNamespace(entries=entries[2:], buckets=buckets)  # nothing shares a variant: a line per model
    assert _length_series(one_each) == ({"rnn_noattn seed 3": [23.0, 17.0], "rnn_bahdanau": [35.0, 30.0]}, {})
    same_name = [entry("x seed 1", "a", 1), entry("x seed 2", "a", 2), entry("x seed 3", "b", 3)]
    for b, bleu in zip(buckets, ([10.0, 12.0, 30.0], [20.0, 22.0, 40.0])):
        b.bleu.update(zip(("x seed 1", "x seed 2", "x seed 3"), bleu))
    series, _ = _length_series(SimpleNamespace(entries=same_name, buckets=buckets))
    assert series == {"x (a) (2 seeds)": [11.0, 21.0], "x (b) (1 seed)": [30.0, 40.0]}  # no line drawn over another
    many = {f"model {i}": [30.0 - i, 20.0] for i in range(12)}  # more lines than tab10 has colours
    path = plot_bleu_by_length(["1-10", "11+"], many, tmp_path / "by_length.svg", {"model 0": ([25.0, 15.0], [31.0, 22.0])})
    assert path.is_file() and path.read_text().count("model 11") == 1


def test_a_setting_that_names_a_file_is_labelled_by_the_file_name_and_an_empty_one_as_none(tmp_path):
    """The Hansards explorer's tabs read 'data.train_alignments=/work/main/.bench/.../train.gdfa'
    beside 'data.train_alignments=': a line long each, the folder telling nothing apart."""
    from mt.analysis.compare.entries import describe_models
    from mt.config import to_yaml

    links = tmp_path / "deep" / "folder" / "train.gdfa"
    links.parent.mkdir(parents=True)
    links.write_text("0-0\n")
    dirs = []
    for folder, extra in (("plain", []), ("supervised", [f"data.train_alignments={links}", "train.alignment_loss=1.0"])):
        model = tmp_path / folder / "model"
        model.mkdir(parents=True)
        (model / "config.yaml").write_text(to_yaml(compose(["model=rnn_bahdanau", *extra])))
        dirs.append(model)
    plain, supervised = (e.name for e in describe_models(dirs))
    assert "data.train_alignments=train.gdfa" in supervised and str(links.parent) not in supervised
    assert "data.train_alignments=none" in plain


def test_runs_are_seeds_of_one_model_only_when_their_settings_differ_in_the_seed_alone(tmp_path):
    """Two rnn_bahdanau runs with seed 1 that differ in train.alignment_loss (or input feeding,
    lr, ...) were named apart but averaged as "2 seeds" in scores_by_variant.csv, the length plot
    and the median-seed baseline: the variant recorded only cell, size, score and normaliser."""
    from types import SimpleNamespace

    from mt.analysis.compare.comparison import by_variant
    from mt.analysis.compare.entries import describe_models, seed_groups
    from mt.config import to_yaml
    from mt.evaluation.metrics import Scores

    def run(folder: str, *overrides: str) -> Path:
        model = tmp_path / folder / "model"
        model.mkdir(parents=True)
        (model / "config.yaml").write_text(to_yaml(compose(["model=rnn_bahdanau", *overrides])))
        return model

    dirs = [run("plain", "train.seed=1"), run("supervised", "train.seed=1", "train.alignment_loss=0.5"),
            run("plain2", "train.seed=2", "train.epochs=30", "train.threads=2"),  # how long and where: still a seed
            run("lr", "train.seed=3", "train.lr=0.01")]
    entries = describe_models(dirs)
    names = [e.name for e in entries]
    assert len(set(names)) == 4
    assert "train.alignment_loss=0.5" in names[1] and "train.alignment_loss=0.0" in names[0]
    assert "train.lr=0.01" in names[3] and "train.epochs" not in " ".join(names)
    groups = seed_groups(entries)
    assert sorted(len(m) for m in groups.values()) == [1, 1, 2]
    assert [e.name for e in next(m for m in groups.values() if len(m) == 2)] == [names[0], names[2]]
    scores = {n: Scores(20.0 + i, 40.0, 10, "", "") for i, n in enumerate(names)}
    rows = by_variant(SimpleNamespace(entries=entries, scores=scores))
    assert sorted(r["seeds"] for r in rows) == [1, 1, 2]
    assert len({(r["model"], r["variant"]) for r in rows}) == 3  # each row says which setting it is


def test_records_without_settings_are_grouped_by_their_configs(trained_model_dir, corpus_dir, tmp_path):
    """Records written before entries kept their settings carry their config: it decides."""
    from mt.analysis.compare.saved_systems import load_systems

    records = tmp_path / "records"
    assert main(["compare", str(trained_model_dir), "--src", str(corpus_dir / "test.en"), "--ref",
                 str(corpus_dir / "test.de"), "--bootstrap", "20", "--no-progress", "--out", str(tmp_path / "o"),
                 "--save-systems", str(records)]) == 0
    path = next(records.iterdir())
    data = json.loads(gzip.decompress(path.read_bytes()))
    settings = data["entry"].pop("settings")
    assert json.loads(settings)["model.attention.type"] == "bahdanau" and "train.seed" not in json.loads(settings)
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    assert load_systems([records])[0].entry.settings == settings


def test_a_resampling_seed_of_zero_is_refused_not_unseeded(trained_model_dir, corpus_dir, tmp_path, capsys):
    """sacrebleu reads a seed of 0 as no seed: two equal mt compare --seed 0 calls gave p = 0.0398 and 0.0746."""
    from mt.errors import ConfigError
    from mt.evaluation.significance import paired_bootstrap

    refs = [f"the cat number {i} sat on the mat" for i in range(30)]
    systems = {"a": [f"a dog {i}" for i in range(30)], "b": refs[:15] + [f"a dog {i}" for i in range(15)]}
    with pytest.raises(ConfigError, match="from 1"):
        paired_bootstrap(systems, refs, "a", samples=50, seed=0)
    assert paired_bootstrap(systems, refs, "a", samples=50, seed=1) == paired_bootstrap(systems, refs, "a",
                                                                                          samples=50, seed=1)
    assert main(["compare", str(trained_model_dir), "--src", str(corpus_dir / "test.en"), "--ref",
                 str(corpus_dir / "test.de"), "--seed", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--seed must be 1 or more" in err and len(err.strip().splitlines()) == 1


def test_the_baseline_is_named_by_its_directory_or_its_name(tmp_path):
    """Two runs of one preset get names that carry their settings; a user names the baseline as
    they named the model, by its directory (the model's or its run's), or by the name."""
    from mt.analysis.compare.comparison import baseline_name
    from mt.analysis.compare.entries import ModelEntry

    def entry(name, run):
        (tmp_path / run / "model").mkdir(parents=True)
        return ModelEntry(name, str(tmp_path / run / "model"), "transformer 3+3", True, 0, "en", "de", 1)

    entries = [entry("transformer (lr 0.002)", "a"), entry("transformer (lr 0.001)", "b")]
    assert baseline_name(None, entries) is None
    assert baseline_name("transformer (lr 0.001)", entries) == "transformer (lr 0.001)"
    assert baseline_name(str(tmp_path / "b" / "model"), entries) == "transformer (lr 0.001)"
    assert baseline_name(str(tmp_path / "a"), entries) == "transformer (lr 0.002)"
    with pytest.raises(MTError, match=r"none of the models: give one of their directories or names "
                                      r"\('transformer \(lr 0.002\)'; 'transformer \(lr 0.001\)'\)"):
        baseline_name(str(tmp_path / "c"), entries)

