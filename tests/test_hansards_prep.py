"""The text preparation of studies/hansards_alignment/hansards_aer.py: training text written as the gold's
annotators wrote theirs, and the gold's French made to match accent-free training text
without moving a word (the gold's links index words)."""

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "studies" / "hansards_alignment" / "hansards_aer.py"


@pytest.fixture(scope="module")
def prep():
    spec = importlib.util.spec_from_file_location("hansards_aer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_french_elisions_and_punctuation_as_the_gold(prep):
    assert prep.hansards_style("C'est l'avis qu'il a donné, aujourd'hui.", "fr") == \
        "ce est le avis que il a donné , aujourd' hui ."
    assert prep.hansards_style("It's the Minister's view; isn't it?", "en") == \
        "it 's the minister 's view ; is n't it ?"


def test_contractions_only_where_asked(prep):
    line = "Le rapport du comité des finances, au nom des députés aux Communes."
    assert prep.hansards_style(line, "fr") == "le rapport du comité des finances , au nom des députés aux communes ."
    assert prep.hansards_style(line, "fr", contractions=True) == \
        "le rapport de le comité de les finances , à le nom de les députés à les communes ."
    assert prep.hansards_style("dues aux deux duos", "fr", contractions=True) == "dues à les deux duos"  # words only


def test_stripping_accents_keeps_every_word_in_place(prep):
    gold = "il a été élu à le poste de ministre de la santé , où il a œuvré ."
    stripped = prep.strip_accents(gold)
    assert stripped == "il a ete elu a le poste de ministre de la sante , ou il a œuvre ."
    assert len(stripped.split()) == len(gold.split())


def test_the_gold_is_written_zero_based_for_the_explorer_sure_and_possible_kept(prep):
    assert prep.zero_based("1-1 2p3 2-2 3p1 3-1") == "0-0 1-1 2-0 1p2"  # 3p1 is also sure: once, as 3-1
    assert prep.zero_based("") == ""


def test_models_train_a_few_at_a_time_and_a_failure_stops_the_step(prep, tmp_path):
    import sys

    done = []
    write = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('x')"
    commands = [(tmp_path / f"run{i}", [sys.executable, "-c", write, str(tmp_path / f"out{i}")]) for i in range(3)]
    prep.run_parallel(commands, 2, lambda folder, cmd, seconds: done.append(folder.name))
    assert sorted(done) == ["run0", "run1", "run2"] and all((tmp_path / f"out{i}").is_file() for i in range(3))
    with pytest.raises(SystemExit, match="training failed"):
        prep.run_parallel([(tmp_path / "bad", [sys.executable, "-c", "raise SystemExit(3)"])], 2)


def test_a_training_record_reads_wall_clock_epochs_and_speed(prep, tmp_path):
    import json

    rows = [{"epoch": 1, "step": 10, "valid_bleu": 5.0, "tokens_per_s": 900.0, "precision": "bf16"},
            {"epoch": 2, "step": 20, "valid_bleu": 7.0, "tokens_per_s": 1000.0, "precision": "bf16"},
            {"epoch": 3, "step": 30, "valid_bleu": 6.0, "tokens_per_s": 1100.0, "precision": "bf16"}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "trained.json").write_text(json.dumps({"seconds": 42, "machine": {"cpu": "x"}}))
    record = prep.training_record(tmp_path)
    assert record == {"seconds": 42, "machine": {"cpu": "x"}, "epochs": 3, "steps": 30, "precision": "bf16",
                      "best_epoch": 2, "tokens_per_s": 1000}


def test_every_rule_says_whether_it_shifts_since_mt_align_defaults_to_how_the_model_trained(prep):
    for name in prep.VARIANTS:
        rules = prep.rules_for(name)
        assert prep.best_rule(name) in rules
        for rule, flags in rules.items():  # never left to the model's default
            assert ("--shift-att" in flags) == ("Shift-Att" in rule) != ("--no-shift-att" in flags), (name, rule)
        assert ("threshold 0.5, Shift-Att" in rules) == prep.shifted(name)  # on the rows the supervision shaped
        assert ("threshold 0.5" in rules) == (prep.supervised(name) and not prep.shifted(name))
    assert prep.supervised("luong_general_supervised") and not prep.supervised("luong_general")
    assert prep.shifted("transformer_supervised_shift") and not prep.shifted("transformer_supervised")


def test_the_transformer_is_read_at_every_layer_and_head_of_its_preset(prep):
    import yaml

    from mt.config import ModelConfig

    preset = yaml.safe_load((Path(__file__).parents[1] / "conf" / "model" / "transformer.yaml").read_text())
    assert (prep.TRANSFORMER_LAYERS, prep.TRANSFORMER_HEADS) == (preset["model"]["dec_layers"], ModelConfig().heads)
    rules = prep.rules_for("transformer")
    for layer in range(prep.TRANSFORMER_LAYERS):
        for head in range(prep.TRANSFORMER_HEADS):
            assert rules[f"argmax, layer {layer} head {head}, Shift-Att"] == [
                "--shift-att", "--layer", str(layer), "--head", str(head)]
    assert f"argmax, layer 0 head {prep.TRANSFORMER_HEADS}" not in rules
    assert prep.best_rule("transformer") == "argmax, layer 1 mean of heads"  # the penultimate, as Garg et al.
    assert prep.best_rule("transformer_supervised_shift") == "argmax, Shift-Att"
    assert not any("head" in rule for rule in prep.rules_for("transformer_supervised_shift"))  # one head, trained


def test_a_rule_is_chosen_on_the_first_gold_sentences_and_scored_on_the_others(prep, tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "DEV", 2)
    gold = tmp_path / "gold"  # 1-based, as the Hansards gold
    gold.write_text("1-1 2-2\n1-1\n1-1 2-2\n2-1\n")
    exact, shifted = tmp_path / "exact.pharaoh", tmp_path / "shifted.pharaoh"  # 0-based predictions
    exact.write_text("0-0 1-1\n0-0\n0-0\n0-0\n")  # right on the first two, half right after
    shifted.write_text("1-0\n1-0\n0-0 1-1\n1-0\n")  # wrong on the first two, right after
    args = ["--gold", str(gold), "--gold-one-based"]
    split = prep.split_aer(exact, args)
    assert split["dev_aer"] == 0.0
    assert split["held_out"] == {"aer": 60.0, "precision": 50.0, "recall": 33.33, "sentences": 2}  # |A|=2, |S|=3, one right: 1 - 2/5
    assert prep.split_aer(shifted, args) == {"dev_aer": 100.0,
                                             "held_out": {"aer": 0.0, "precision": 100.0, "recall": 100.0,
                                                          "sentences": 2}}
    report = {"eflomal": {"version": "2.0.0", "forward": {"aer": 1.0, **prep.split_aer(exact, args)}},
              "attention": {"m": {"rules": {"shifted": {"aer": 1.0, **prep.split_aer(shifted, args)},
                                            "exact": {"aer": 1.0, **split}}}}}
    table = prep.chosen_table(report)
    # the rule the first sentences choose is reported, not the one best on the others
    assert "| m | exact | 0.0 | 60.0 | 50.0 | 33.3 |" in table and "scored on the other 2" in table
    assert "| eflomal 2.0.0 | forward | 0.0 | 60.0 |" in table


def test_only_finished_runs_are_aligned_or_explored(prep, tmp_path):
    run = tmp_path / "runs" / "bahdanau.en-fr"
    (run / "model").mkdir(parents=True)  # written after the first epoch, before the run ends
    assert prep.finished_model(run) is None
    (run / "trained.json").write_text("{}")
    assert prep.finished_model(run) == run / "model"
    demo = tmp_path / "demo_runs" / "bahdanau.en-de"  # the demo step trains to the end before it aligns
    (demo / "model").mkdir(parents=True)
    assert prep.finished_model(demo) == demo / "model"
    assert prep.finished_model(tmp_path / "runs" / "none.en-fr") is None


def test_label_sources_resolve_to_a_file_per_direction(prep, tmp_path, monkeypatch):
    """A supervised variant's placeholder becomes the file of links its direction learns."""
    monkeypatch.setattr(prep, "WORK", tmp_path)
    assert prep.labels("transformer_supervised_shift", prep.SUPERVISED, reverse=False) == \
        f"data.train_alignments={tmp_path / 'eflomal' / 'train.gdfa'}"
    assert prep.labels("transformer_supervised_shift_inter", prep.SUPERVISED_INTERSECTION, reverse=True) == \
        f"data.train_alignments={tmp_path / 'eflomal' / 'train.inter.rev'}"
    assert prep.labels("transformer", "model.dropout=0.1", reverse=False) == "model.dropout=0.1"
    with pytest.raises(SystemExit, match="train transformer in both directions first"):
        prep.labels("transformer_self_shift", prep.SELF_TRAINED, reverse=False)
    for name, (teacher, rule, _) in prep.TEACHERS.items():  # a teacher's reading is one the align step scores
        assert prep.supervised(name) and rule in prep.rules_for(teacher)


def test_eflomal_labels_of_the_training_pairs_symmetrised_and_intersected(prep, tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "WORK", tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.en").write_text("a b\nc d\n")
    (tmp_path / "eflomal").mkdir()
    # what eflomal aligned: the two training pairs, then one more (validation, gold...)
    (tmp_path / "eflomal" / "all.fwd").write_text("0-0 1-1\n0-1 1-0\n0-0\n")
    (tmp_path / "eflomal" / "all.rev").write_text("0-0\n0-1\n0-0\n")
    prep.training_alignments()
    inter = (tmp_path / "eflomal" / "train.inter").read_text().splitlines()
    assert inter == ["0-0", "0-1"]
    assert (tmp_path / "eflomal" / "train.inter.rev").read_text().splitlines() == ["0-0", "1-0"]
    gdfa = (tmp_path / "eflomal" / "train.gdfa").read_text().splitlines()
    assert gdfa == ["0-0 1-1", "0-1 1-0"]  # grown from the intersection to the diagonal neighbours


def test_self_training_labels_come_from_the_teacher_and_its_twin_shard_by_shard(prep, tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "WORK", tmp_path)
    monkeypatch.setattr(prep, "SHARD", 2)
    teacher, rule, how = prep.TEACHERS["transformer_self_shift"]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.en").write_text("a b c\n\nd e\n")  # an empty pair stays a line
    (tmp_path / "data" / "train.fr").write_text("x y\n\nz\n")
    with pytest.raises(SystemExit, match="train transformer in both directions first"):
        prep.labels("transformer_self_shift", prep.SELF_TRAINED, reverse=False)
    for direction in ("en-fr", "fr-en"):
        (tmp_path / "runs" / f"{teacher}.{direction}" / "model").mkdir(parents=True)
        (tmp_path / "runs" / f"{teacher}.{direction}" / "trained.json").write_text("{}")
    calls = []

    def fake_align(cmd, check):  # the teacher's links of each shard: source words 0 and 1 to target word 0
        calls.append(cmd)
        lines = Path(cmd[cmd.index("--src-file") + 1]).read_text().splitlines()
        out = Path(cmd[cmd.index("--pharaoh") + 1])
        out.write_text("".join(" ".join(f"{i}-0" for i in range(min(len(line.split()), 2))) + "\n"
                               for line in lines))

    monkeypatch.setattr(prep.subprocess, "run", fake_align)
    made = Path(prep.labels("transformer_self_shift", prep.SELF_TRAINED, reverse=False).split("=", 1)[1])
    assert made.read_text().splitlines() == ["0-0 1-0", "", "0-0 1-0"]
    assert len(calls) == 2  # two shards of at most 2 pairs
    assert calls[0][2] == str(tmp_path / "runs" / f"{teacher}.en-fr" / "model")
    assert [*prep.rules_for(teacher)[rule], "--backward-model", str(tmp_path / "runs" / f"{teacher}.fr-en" / "model"),
            "--symmetrize", how] == calls[0][-len(prep.rules_for(teacher)[rule]) - 4:]
    assert prep.self_labels("transformer_self_shift", reverse=True).read_text().splitlines() == \
        ["0-0 0-1", "", "0-0 0-1"]
    assert len(calls) == 2  # made once
    os.utime(tmp_path / "runs" / f"{teacher}.en-fr" / "trained.json", (2e9, 2e9))  # the teacher trained again
    prep.self_labels("transformer_self_shift")
    assert len(calls) == 4


def test_by_epoch_reads_each_kept_model_beside_the_twin_of_the_same_validation(prep, tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "WORK", tmp_path)
    name = "transformer_supervised_shift"
    for direction, steps in (("en-fr", (100, 200)), ("fr-en", (90, 180))):
        for step in steps:
            (tmp_path / "runs" / f"{name}.{direction}" / "checkpoints" / f"step_{step:08d}").mkdir(parents=True)
        (tmp_path / "runs" / f"{name}.{direction}" / "checkpoints" / "last").mkdir()
    (tmp_path / "runs" / f"{name}.en-fr" / "metrics.jsonl").write_text(
        '{"epoch": 1, "step": 100, "valid_bleu": 20.0}\n{"train_loss": 3.0, "step": 150}\n'
        '{"epoch": 2, "step": 200, "valid_bleu": 25.0}\n')
    calls = []
    monkeypatch.setattr(prep.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    monkeypatch.setattr(prep, "aer_of", lambda out, gold: {"aer": 10.0 if "00000100" in out.name else 8.0})
    results = prep.by_epoch(SimpleNamespace(variants=[name, "transformer"], gold=tmp_path / "gold"))
    assert "transformer" not in results  # it kept nothing
    assert [(r["epoch"], r["valid_bleu"], r["aer"]) for r in results[name]] == [(1, 20.0, 10.0), (2, 25.0, 8.0)]
    assert all(r["reading"] == "threshold 0.5, Shift-Att, mean" for r in results[name])
    first, second = calls
    assert first[2].endswith("en-fr/checkpoints/step_00000100")
    assert first[first.index("--backward-model") + 1].endswith("fr-en/checkpoints/step_00000090")
    assert second[second.index("--backward-model") + 1].endswith("fr-en/checkpoints/step_00000180")
    assert second[second.index("--symmetrize") + 1] == "mean" and "--shift-att" in second
