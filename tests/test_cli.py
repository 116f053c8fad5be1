"""The command line as a user meets it: train, translate, evaluate, align, errors."""

import json
from pathlib import Path

import pytest

from mt.cli.main import main

from .conftest import TINY_TRAIN, run_mt


def test_train_writes_a_movable_model_directory(trained_model_dir: Path):
    names = sorted(p.name for p in trained_model_dir.iterdir())
    assert names == ["config.yaml", "manifest.json", "model.safetensors", "src.model", "tgt.model"]
    metrics = [json.loads(line) for line in (trained_model_dir.parent / "metrics.jsonl").read_text().splitlines()]
    assert metrics and {"valid_loss", "valid_bleu", "tokens_per_s"} <= set(metrics[0])


def test_translate_keeps_every_line_in_order_and_empty_lines_empty(trained_model_dir, tmp_path, capsys):
    lines = ["The dog sleeps.", "", "The old man has seen the cat.", "   ", "A child laughs."]
    src = tmp_path / "in.en"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.de"
    assert main(["translate", str(trained_model_dir), "--input", str(src), "--output", str(out), "--beam", "3"]) == 0
    result = out.read_text().split("\n")
    assert len(result) == len(lines) + 1 and result[-1] == ""
    assert result[1] == "" and result[3] == ""
    # stdin -> stdout gives the same translations, line for line.
    stdin = run_mt("translate", str(trained_model_dir), "--beam", "3", cwd=tmp_path, stdin="\n".join(lines) + "\n")
    assert stdin.returncode == 0, stdin.stderr
    assert stdin.stdout.split("\n") == result
    # Only \n ends a line: U+2028, U+0085 and form feeds inside a line keep it one line.
    odd = ["The dog\u2028sleeps.", "A child\x85laughs.", "The cat\x0csleeps."]
    stdin = run_mt("translate", str(trained_model_dir), cwd=tmp_path, stdin="\n".join(odd) + "\n")
    assert stdin.returncode == 0, stdin.stderr
    assert len(stdin.stdout.split("\n")) == len(odd) + 1


def test_translate_nbest_writes_ranked_hypotheses_per_line(trained_model_dir, tmp_path, capsys):
    lines = ["The dog sleeps.", "", "The old man has seen the cat."]
    src = tmp_path / "in.en"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "nbest.txt"
    assert main(["translate", str(trained_model_dir), "--input", str(src), "--output", str(out), "--nbest", "3",
                 "--beam", "3", "--length-penalty-type", "gnmt", "--length-penalty", "0.6", "--no-repeat-ngram",
                 "3"]) == 0
    rows = [line.split(" ||| ") for line in out.read_text().splitlines()]
    assert all(len(r) == 4 for r in rows)
    assert [int(r[0]) for r in rows] == [0, 0, 0, 1, 2, 2, 2]  # an empty line has one empty hypothesis
    for i in (0, 2):
        mine = [r for r in rows if int(r[0]) == i]
        ranking = [float(r[3]) for r in mine]
        assert ranking == sorted(ranking, reverse=True) and len({r[1] for r in mine}) == 3
        assert all(float(r[2]) <= 0 for r in mine)
    # The first of each n-best list is what a beam of the same width translates.
    one = tmp_path / "one.txt"
    assert main(["translate", str(trained_model_dir), "--input", str(src), "--output", str(one), "--beam", "3",
                 "--length-penalty-type", "gnmt", "--length-penalty", "0.6", "--no-repeat-ngram", "3"]) == 0
    assert one.read_text().split("\n")[:3] == [rows[0][1], "", rows[4][1]]
    assert main(["translate", str(trained_model_dir), "--input", str(src), "--nbest", "4", "--beam", "2"]) == 2
    assert "--nbest 4 needs a beam at least as wide" in capsys.readouterr().err


def test_evaluate_prints_bleu_chrf_with_signature(trained_model_dir, corpus_dir, tmp_path, capsys):
    scores = tmp_path / "scores.json"
    assert main(["evaluate", str(trained_model_dir), "--src", str(corpus_dir / "test.en"),
                 "--ref", str(corpus_dir / "test.de"), "--json", str(scores)]) == 0
    out = capsys.readouterr().out
    assert "BLEU" in out and "nrefs:1|case:mixed" in out and "chrF" in out
    data = json.loads(scores.read_text())
    assert data["scores"]["sentences"] == 20 and 0 <= data["scores"]["bleu"] <= 100


def test_align_draws_a_heatmap_for_forced_and_free_decoding(trained_model_dir, tmp_path, capsys):
    forced = tmp_path / "forced.png"
    weights = tmp_path / "forced.json"
    assert main(["align", str(trained_model_dir), "--src", "The dog sleeps.", "--ref", "Der Hund schläft.",
                 "--out", str(forced), "--json", str(weights)]) == 0
    assert forced.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(weights.read_text())
    assert len(data["attention"]) == len(data["tgt_tokens"]) and len(data["attention"][0]) == len(data["src_tokens"])
    assert all(abs(sum(row) - 1) < 1e-3 for row in data["attention"])
    free = tmp_path / "free.png"
    assert main(["align", str(trained_model_dir), "--src", "The dog sleeps.", "--beam", "2", "--out", str(free)]) == 0
    assert free.stat().st_size > 1000


def test_user_errors_end_with_one_clear_line_and_nonzero_exit(trained_model_dir, corpus_dir, tmp_path, capsys):
    assert main(["translate", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["translate", str(trained_model_dir), "--input", str(tmp_path / "missing.txt")]) == 2
    assert "missing file" in capsys.readouterr().err
    assert main(["evaluate", str(trained_model_dir), "--src", str(corpus_dir / "test.en"),
                 "--ref", str(corpus_dir / "train.de")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "has 20 lines but" in err and len(err.strip().splitlines()) == 1
    assert main(["translate", str(trained_model_dir), "--beam", "0"]) == 2
    assert main(["frobnicate"]) == 2
    capsys.readouterr()
    assert main(["train", "--config-dir", str(tmp_path / "no_presets"), "model=mine"]) == 2
    err = capsys.readouterr().err
    assert "--config-dir" in err and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_version_names_mt_torch_and_python(capsys):
    import platform

    import mt

    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"mt {mt.__version__} (torch ") and platform.python_version() in out


def test_align_refuses_a_model_without_attention(corpus_dir, tmp_path):
    result = run_mt("train", *TINY_TRAIN, "model=rnn_noattn", "train.max_steps=1", f"data.dir={corpus_dir}",
                    f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    align = run_mt("align", str(tmp_path / "run" / "model"), "--src", "The dog sleeps.", "--out",
                   str(tmp_path / "x.png"), cwd=tmp_path)
    assert align.returncode == 2 and "has no attention" in align.stderr


@pytest.mark.parametrize("override, message", [
    ("model=transformerz", "Could not find 'model/transformerz'"),
    ("model.hiden_dim=3", "model.hiden_dim is not a setting: did you mean model.hidden_dim?"),
    ("model.attention.type=luong_wrong", "Invalid value 'luong_wrong'"),
    ("model.dropout=1.5", "model.dropout must be in [0, 1)"),
    ("data=files", "data.dir is not set"),
    ("data.source=files", "data/demo is not a directory: point data.dir at the corpus folder"),
])
def test_bad_config_stops_at_start_with_the_key_named(override, message, tmp_path):
    result = run_mt("train", override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "run" / "model").exists()


def test_sweep_trains_both_variants_into_their_own_directories(corpus_dir, tmp_path):
    result = run_mt("train", "-m", "model=rnn_noattn,rnn_bahdanau", *TINY_TRAIN, "train.max_steps=1",
                    f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "sweep" / "0_rnn_noattn" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "sweep" / "1_rnn_bahdanau" / "model" / "model.safetensors").is_file()


PRESETS = ["rnn_noattn", "rnn_bahdanau", "rnn_luong_dot", "rnn_luong_general", "rnn_luong_concat",
           "rnn_luong_local", "transformer"]


def test_every_preset_trains_in_one_sweep_and_works_with_every_command(corpus_dir, tmp_path, capsys):
    result = run_mt("train", "-m", f"model={','.join(PRESETS)}", *TINY_TRAIN, "train.max_steps=2",
                    f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for i, preset in enumerate(PRESETS):
        model_dir = tmp_path / "sweep" / f"{i}_{preset}" / "model"
        out = tmp_path / f"{preset}.de"
        assert main(["translate", str(model_dir), "--input", str(corpus_dir / "test.en"), "--output", str(out),
                     "--beam", "2"]) == 0
        assert len(out.read_text().splitlines()) == 20
        assert main(["evaluate", str(model_dir), "--src", str(corpus_dir / "test.en"),
                     "--ref", str(corpus_dir / "test.de")]) == 0
        code = main(["align", str(model_dir), "--src", "The dog sleeps.", "--out", str(tmp_path / f"{preset}.png")])
        assert code == (2 if preset == "rnn_noattn" else 0)


def test_align_all_heads_draws_every_layer_and_head_of_a_transformer(corpus_dir, tmp_path, capsys):
    result = run_mt("train", *TINY_TRAIN, "model=transformer", "train.max_steps=2", f"data.dir={corpus_dir}",
                    f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    weights = tmp_path / "grid.json"
    assert main(["align", str(tmp_path / "run" / "model"), "--src", "The dog sleeps.", "--ref", "Der Hund schläft.",
                 "--all-heads", "--out", str(tmp_path / "grid.png"), "--json", str(weights)]) == 0
    data = json.loads(weights.read_text())
    maps = data["attention_maps"]
    assert (len(maps), len(maps[0])) == (3, 4)  # the preset's 3 decoder layers, 4 heads
    assert len(maps[0][0]) == len(data["tgt_tokens"]) and len(maps[0][0][0]) == len(data["src_tokens"])
    # The summary map is the mean over the heads of the last layer (the preset's reduction).
    last = [[sum(maps[-1][h][t][s] for h in range(4)) / 4 for s in range(len(maps[0][0][0]))]
            for t in range(len(maps[0][0]))]
    assert all(abs(a - b) < 1e-3 for row_a, row_b in zip(last, data["attention"]) for a, b in zip(row_a, row_b))
    assert (tmp_path / "grid.png").stat().st_size > 5000


@pytest.mark.parametrize("problem, message", [
    ("unequal", "has 3 lines but"),
    ("utf8", "line 2: invalid UTF-8"),
    ("missing", "missing file"),
    ("language", "missing file"),
])
def test_bad_training_data_ends_with_one_line_naming_file_and_fix(problem, message, tmp_path):
    data = tmp_path / "corpus"
    data.mkdir()
    for split in ("train", "valid", "test"):
        (data / f"{split}.en").write_text("a\nb\nc\n")
        (data / f"{split}.de").write_text("x\ny\nz\n")
    if problem == "unequal":
        (data / "train.de").write_text("x\ny\n")
    elif problem == "utf8":
        (data / "valid.de").write_bytes(b"x\n\xff\nz\n")
    elif problem == "missing":
        (data / "test.en").unlink()
    extra = ["data.tgt_lang=xx"] if problem == "language" else []
    result = run_mt("train", "data=files", f"data.dir={data}", *extra, f"cache_dir={tmp_path / 'cache'}",
                    f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0]


# The CLI's parts: the table of commands, the flags made from SearchConfig, serve's settings.

CLI_HELPERS = {"__init__", "main", "commands", "flags"}  # the modules of mt/cli that are no command


def test_the_usage_lists_exactly_the_table_and_each_command_has_a_parser_and_run(capsys):
    from importlib import import_module

    from mt.cli.commands import COMMANDS

    assert main(["--help"]) == 0
    listed = capsys.readouterr().out.split("commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split(None, 1) for line in listed] == [[name, summary] for name, summary, _ in COMMANDS]
    for name, _, module_name in COMMANDS:
        module = import_module(module_name)
        assert callable(module.run), name
        assert module.parser().prog == f"mt {name}"
    # Every command module of mt/cli has its row: none is left out of mt --help.
    modules = {p.stem for p in (Path(__file__).resolve().parents[1] / "mt" / "cli").glob("*.py")}
    assert {m.rsplit(".", 1)[1] for _, _, m in COMMANDS} == modules - CLI_HELPERS


SEARCHING = ["translate", "evaluate", "align", "compare", "explore", "serve"]


@pytest.mark.parametrize("command", SEARCHING)
def test_the_search_flags_are_search_config_fields(command):
    from dataclasses import fields
    from enum import Enum
    from importlib import import_module

    from mt.cli.flags import search_config
    from mt.decoding.search import DEFAULT_BEAM, SearchConfig

    flagged = {f.metadata["flag"]: f for f in fields(SearchConfig) if "flag" in f.metadata}
    assert {"--beam", "--length-penalty", "--length-penalty-type", "--max-len-a", "--max-len-b", "--no-repeat-ngram",
            "--max-input-len"} <= set(flagged)  # the flags of old keep their names
    parser = import_module(f"mt.cli.{command}").parser()
    group = next(g for g in parser._action_groups if g.title == "search")
    assert {a.option_strings[0]: a.dest for a in group._group_actions} == {k: f.name for k, f in flagged.items()}
    needed = {"translate": ["M"], "evaluate": ["M", "--src", "s", "--ref", "r"], "align": ["M"],
              "compare": ["--out", "o"], "explore": ["M", "--src-file", "s", "--out", "o"], "serve": ["M"]}[command]
    # the defaults are SearchConfig's, but the beam: every command's (mt.decoding.search.DEFAULT_BEAM)
    assert search_config(parser.parse_args(needed)) == SearchConfig(beam=DEFAULT_BEAM)
    given = search_config(parser.parse_args([*needed, "--beam", "3", "--length-penalty", "0.6", "--length-penalty-type",
                                             "gnmt", "--max-len-a", "1.5", "--max-len-b", "4", "--no-repeat-ngram", "2",
                                             "--max-input-len", "50"]))
    assert given == SearchConfig(beam=3, length_penalty=0.6, penalty="gnmt", max_len_a=1.5, max_len_b=4,
                                 no_repeat_ngram=2, max_input_len=50)
    entries = {"-" + e.split()[0]: " ".join(e.split()) for e in parser.format_help().split("\n  -")[1:]}
    for flag, field in flagged.items():  # --help shows each default
        default = DEFAULT_BEAM if field.name == "beam" else \
            field.default.value if isinstance(field.default, Enum) else field.default
        shown = f"{default:g}" if isinstance(default, float) else default
        assert f"(default {shown})" in entries[flag], entries[flag]
    assert "(default 1024)" in entries["--max-input-len"] and "(default plain)" in entries["--length-penalty-type"]


def test_export_writes_every_format_it_can_open():
    from mt.cli import export
    from mt.export import FORMATS

    assert set(export.WRITERS) == set(FORMATS)
    assert next(a for a in export.parser()._actions if a.dest == "to").choices == list(FORMATS)


@pytest.mark.parametrize("settings, message", [
    ({"port": 0}, "--port must be at least 1, got 0"),
    ({"port": 65536}, "--port must be at most 65535, got 65536"),
    ({"processes": 0}, "--search-processes must be at least 1, got 0"),
    ({"batching": {"max_tokens": 0}}, "--max-batch-tokens must be at least 1, got 0"),
    ({"batching": {"max_queue": -3}}, "--max-queue must be at least 1, got -3"),
    ({"limits": {"max_chars": 0}}, "--char-limit must be at least 1, got 0"),
    ({"limits": {"max_sentences": 0}}, "--max-texts must be at least 1, got 0"),
    ({"limits": {"max_body": 0}}, "--max-body must be at least 1, got 0"),
    ({"max_connections": 0}, "--max-connections must be at least 1, got 0"),
    ({"threads": -1}, "--threads must be at least 0 (0: the cores shared among the search processes), got -1"),
    ({"limits": {"timeout": 0.0}}, "--timeout and --read-timeout must be above 0, --max-wait-ms and --min-wait-ms"),
    ({"limits": {"read_timeout": -1.0}}, "--timeout and --read-timeout must be above 0"),
    ({"batching": {"max_wait": -0.001}}, "--max-wait-ms and --min-wait-ms at least 0"),
    ({"batching": {"min_wait": -1.0}}, "--max-wait-ms and --min-wait-ms at least 0"),
])
def test_serve_settings_refuse_a_value_out_of_range_in_one_line(settings, message):
    from mt.errors import ConfigError
    from mt.serving.batcher import BatchingOptions
    from mt.serving.protocol import Limits, ServeSettings

    built = {**settings}
    if "batching" in built:
        built["batching"] = BatchingOptions(**built["batching"])
    if "limits" in built:
        built["limits"] = Limits(**built["limits"])
    with pytest.raises(ConfigError) as refused:
        ServeSettings(**built)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    ServeSettings(threads=0, port=65535, batching=BatchingOptions(max_wait=0.0))  # the edges are allowed


def test_mt_serve_builds_its_settings_from_the_flags(monkeypatch, capsys):
    from mt.serving import server
    from mt.serving.batcher import BatchingOptions
    from mt.serving.protocol import Limits, ServeSettings

    got = []
    monkeypatch.setattr(server, "serve", lambda models, settings: got.append((models, settings)) or 0)
    assert main(["serve", "a=DIR", "b"]) == 0
    assert got.pop() == (["a=DIR", "b"], ServeSettings())  # the flags' defaults are the settings'
    assert main(["serve", "M", "--no-batching", "--max-wait-ms", "5", "--char-limit", "10", "--beam", "2",
                 "--search-processes", "2", "--threads", "1", "--port", "8080", "--show-paths"]) == 0
    settings = got.pop()[1]
    assert settings.batching == BatchingOptions(mode="off", max_wait=0.005)
    assert settings.limits == Limits(max_chars=10) and settings.search.beam == 2 and not settings.search.keep_attention
    assert (settings.processes, settings.threads, settings.port, settings.show_paths) == (2, 1, 8080, True)
    assert main(["serve", "M", "--max-body", "0"]) == 2 and not got
    err = capsys.readouterr().err
    assert err.strip() == "error: --max-body must be at least 1, got 0"
