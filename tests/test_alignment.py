"""Word alignments: AER against hand-worked values, Pharaoh files, subword merging,
Shift-Att and grow-diag-final-and on hand-made cases, and the ``mt aer`` command."""

import json
import warnings

import numpy as np
import pytest
import torch

from mt.cli.main import main
from mt.data.tokenizer import word_ids
from mt.decoding.attention_alignment import (
    SYMMETRISATIONS,
    AlignOptions,
    align_pairs,
    argmax_links,
    grow_diag_final_and,
    merge_to_words,
    shift_rows,
    threshold_links,
)
from mt.errors import ConfigError, MTError
from mt.evaluation.aer import (
    GoldLinks,
    aer_by_length,
    alignment_error_rate,
    format_pharaoh,
    has_moses_escapes,
    parse_pharaoh,
    prepare_text,
    read_pharaoh,
    write_pharaoh,
)
from mt.export import open_translator

from .conftest import ALL_VARIANTS, GATED_VARIANTS, variant_config


def gold(sure, possible=()):
    return GoldLinks(set(sure), set(sure) | set(possible))


def test_aer_precision_recall_worked_by_hand():
    # S = {0-0, 1-1}, P = S + {1-2}; A = {0-0, 1-2, 2-2}: |A&S| = 1, |A&P| = 2.
    scores = alignment_error_rate([gold([(0, 0), (1, 1)], [(1, 2)])], [{(0, 0), (1, 2), (2, 2)}])
    assert scores.precision == pytest.approx(66.67)
    assert scores.recall == 50.0
    assert scores.aer == 40.0  # 1 - (1 + 2) / (3 + 2)
    assert (scores.predicted, scores.sure, scores.possible) == (3, 2, 3)


def test_aer_sums_counts_over_the_corpus_before_dividing():
    # Sentence 1 perfect (2 links), sentence 2 all wrong (1 predicted, 1 sure).
    scores = alignment_error_rate([gold([(0, 0), (1, 1)]), gold([(0, 0)])], [{(0, 0), (1, 1)}, {(0, 1)}])
    assert scores.aer == pytest.approx(100 * (1 - (2 + 2) / (3 + 3)), abs=0.01)
    assert scores.recall == pytest.approx(66.67)


def test_aer_with_no_predicted_links_is_100():
    scores = alignment_error_rate([gold([(0, 0), (1, 1)])], [set()])
    assert (scores.aer, scores.precision, scores.recall) == (100.0, 0.0, 0.0)


def test_aer_when_all_gold_links_are_possible():
    scores = alignment_error_rate([gold([], [(0, 0), (1, 1)])], [{(0, 0)}])
    assert scores.aer == 0.0  # 1 - (0 + 1) / (1 + 0)
    assert scores.precision == 100.0


def test_one_based_and_swapped_gold_read_as_zero_based_source_target():
    one = parse_pharaoh("1-1 2p3", one_based=True)
    assert one.sure == {(0, 0)} and one.possible == {(0, 0), (1, 2)}
    swapped = parse_pharaoh("0-1 2p0", swap=True)
    assert swapped.sure == {(1, 0)} and swapped.possible == {(1, 0), (0, 2)}
    assert alignment_error_rate([one], [{(0, 0), (1, 2)}]).aer == 0.0


def test_malformed_links_and_zero_in_one_based_files_are_clear_errors():
    with pytest.raises(MTError, match="not an alignment link"):
        parse_pharaoh("0-1 x-2")
    with pytest.raises(MTError, match="1-based"):
        parse_pharaoh("0-1", one_based=True)
    with pytest.raises(MTError, match="2 sentences and the prediction 1"):
        alignment_error_rate([gold([]), gold([])], [set()])


def test_pharaoh_writer_and_reader_round_trip(tmp_path):
    links = [{(0, 0), (2, 1), (1, 3)}, set(), {(5, 4)}]
    for one_based in (False, True):
        path = write_pharaoh(tmp_path / f"a{one_based}.txt", links, one_based=one_based)
        assert [g.sure for g in read_pharaoh(path, one_based=one_based)] == links
    assert format_pharaoh({(1, 0), (0, 0)}) == "0-0 1-0"
    assert format_pharaoh({(1, 0)}, one_based=True) == "2-1"


def test_subword_merging_sums_source_pieces_and_averages_target_pieces():
    src_words = word_ids(["\u2581the", "\u2581ca", "t"])       # the | cat
    tgt_words = word_ids(["\u2581le", "\u2581ch", "at"])       # le | chat
    assert src_words == [0, 1, 1] and tgt_words == [0, 1, 1]
    attention = torch.tensor([[0.7, 0.2, 0.1, 0.0],  # the EOS column last, unused here
                              [0.1, 0.5, 0.4, 0.0],
                              [0.3, 0.3, 0.4, 0.0]])
    words = merge_to_words(attention, src_words, tgt_words)
    torch.testing.assert_close(words, torch.tensor([[0.7, 0.3], [0.2, 0.8]]))
    torch.testing.assert_close(words.sum(1), torch.ones(2))
    # "chat"'s pieces attend 0.1 / 0.9 and 0.3 / 0.7 to the | cat
    torch.testing.assert_close(merge_to_words(attention, src_words, tgt_words, "max"),
                               torch.tensor([[0.7, 0.3], [0.3, 0.9]]))
    torch.testing.assert_close(merge_to_words(attention, src_words, tgt_words, "first"),
                               torch.tensor([[0.7, 0.3], [0.1, 0.9]]))
    assert threshold_links(merge_to_words(attention, src_words, tgt_words, "max"), 0.25) == {(0, 0), (1, 0), (0, 1),
                                                                                              (1, 1)}
    assert threshold_links(words, 0.25) == {(0, 0), (1, 0), (1, 1)}  # the mean of 0.1 and 0.3 stays below
    with pytest.raises(ConfigError, match="use one of mean, max, first"):
        AlignOptions(merge="sum")


def test_the_merge_reaches_the_pairs_align_reads(trained_model_dir, corpus_dir):
    translator = open_translator(str(trained_model_dir))
    sources = (corpus_dir / "test.en").read_text().splitlines()[:6]
    targets = (corpus_dir / "test.de").read_text().splitlines()[:6]
    by_merge = {merge: align_pairs(translator, sources, targets, merge=merge, shift_att=False)
                for merge in ("mean", "max", "first")}
    for mean, peak, first in zip(*by_merge.values()):
        rows = torch.from_numpy(mean.attention)[: len(mean.tgt_pieces)]
        for merge, pair in (("mean", mean), ("max", peak), ("first", first)):
            expected = merge_to_words(rows, pair.src_word_index, pair.tgt_word_index, merge).numpy()
            np.testing.assert_allclose(pair.word_attention, expected, rtol=1e-6)
        assert (peak.word_attention >= mean.word_attention - 1e-6).all()  # a max is never below the mean
    assert any(not np.allclose(p.word_attention, m.word_attention) for p, m in zip(by_merge["max"], by_merge["mean"]))


def test_argmax_and_threshold_extraction():
    words = torch.tensor([[0.7, 0.3], [0.45, 0.55]])
    assert argmax_links(words) == {(0, 0), (1, 1)}
    assert threshold_links(words, 0.4) == {(0, 0), (0, 1), (1, 1)}


def test_shift_att_reads_each_word_from_the_step_where_it_is_the_input():
    # Rows: the steps predicting token 0, token 1 and EOS. Plain attention aligns token j to
    # source j; the step that reads token j attends to source j + 1.
    attention = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    assert argmax_links(attention[:2]) == {(0, 0), (1, 1)}
    assert argmax_links(shift_rows(attention)) == {(1, 0), (2, 1)}
    with pytest.raises(MTError, match="EOS step"):
        shift_rows(attention[:1])


def test_grow_diag_final_and_on_hand_made_pairs():
    # Grows from the intersection into union links that cover an unaligned word.
    assert grow_diag_final_and({(0, 0), (1, 1), (2, 1)}, {(0, 0), (1, 1), (1, 2)}) == {(0, 0), (1, 1), (2, 1), (1, 2)}
    # A union link between two aligned words is not added.
    assert grow_diag_final_and({(0, 0), (1, 1)}, {(0, 0), (1, 1), (1, 0)}) == {(0, 0), (1, 1)}
    # Not next to anything: only final-and adds links between two unaligned words.
    assert grow_diag_final_and({(0, 0), (2, 2)}, {(0, 0), (3, 3)}) == {(0, 0), (2, 2), (3, 3)}
    assert grow_diag_final_and({(0, 0), (2, 2)}, {(0, 0), (2, 3)}) == {(0, 0), (2, 2)}


def test_mt_aer_command(tmp_path, capsys):
    (tmp_path / "gold.txt").write_text("1-1 2-2 2p3\n1-1\n")
    (tmp_path / "pred.txt").write_text("0-0 1-2\n0-0\n")
    out = tmp_path / "aer.json"
    assert main(["aer", "--gold", str(tmp_path / "gold.txt"), "--gold-one-based",
                 "--pred", str(tmp_path / "pred.txt"), "--json", str(out)]) == 0
    # |A| = 3, |S| = 3, |A&S| = 2 (0-0 twice), |A&P| = 3: AER = 1 - 5 / 6.
    assert "AER 16.67  precision 100.00  recall 66.67" in capsys.readouterr().out
    assert json.loads(out.read_text())["aer"] == pytest.approx(16.67)
    (tmp_path / "short.txt").write_text("0-0\n")
    assert main(["aer", "--gold", str(tmp_path / "gold.txt"), "--pred", str(tmp_path / "short.txt")]) == 2
    assert "2 lines" in capsys.readouterr().err


def test_aer_by_source_length_buckets():
    golds = [gold([(0, 0)]), gold([(0, 0), (1, 1)]), gold([(2, 2)]), gold([(0, 1)])]
    preds = [{(0, 0)}, {(0, 0)}, {(0, 0)}, {(0, 1)}]
    buckets = aer_by_length(golds, preds, lengths=[3, 12, 25, 30], edges=[10, 18])
    assert [label for label, _ in buckets] == ["1-10", "11-18", "19+"]
    assert [s.sentences for _, s in buckets] == [1, 1, 2]
    assert buckets[0][1].aer == 0.0 and buckets[1][1].recall == 50.0
    assert buckets[2][1] == alignment_error_rate(golds[2:], preds[2:])  # the rest, scored together
    assert [label for label, _ in aer_by_length(golds, preds, [3, 4, 5, 6], [10, 18])] == ["1-10"]  # none empty
    with pytest.raises(MTError, match="3 sentence lengths for 4 gold sentences"):
        aer_by_length(golds, preds, [1, 2, 3], [10])
    with pytest.raises(MTError, match="positive and ascending"):
        aer_by_length(golds, preds, [1, 2, 3, 4], [18, 10])


def test_mt_aer_by_length(tmp_path, capsys):
    (tmp_path / "gold.txt").write_text("0-0\n0-0 1-1\n")
    (tmp_path / "pred.txt").write_text("0-0\n0-0\n")
    (tmp_path / "pairs.txt").write_text("a b ||| x y\n" + " ".join(["w"] * 12) + " ||| z\n")
    out = tmp_path / "aer.json"
    assert main(["aer", "--gold", str(tmp_path / "gold.txt"), "--pred", str(tmp_path / "pred.txt"), "--by-length",
                 str(tmp_path / "pairs.txt"), "--edges", "10", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1-10 source words: AER 0.00" in printed and "11+ source words: AER 33.33" in printed
    data = json.loads(out.read_text())
    assert [b["source_words"] for b in data["by_length"]] == ["1-10", "11+"] and data["sentences"] == 2
    assert main(["aer", "--gold", str(tmp_path / "gold.txt"), "--pred", str(tmp_path / "pred.txt"), "--by-length",
                 str(tmp_path / "missing.txt")]) == 2
    assert "missing file" in capsys.readouterr().err


# Attention rows sum to one within what the precision resolves: fp32's 24-bit mantissa, or
# bf16's 8 bits (2**-8 relative per weight; a row of rounded weights is off by about 1e-3).
ROW_SUM_TOLERANCE = {"fp32": (1e-4, 1e-5), "bf16": (1e-2, 2e-2)}  # (row sums, batched against alone)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_forced_decoding_gives_one_attention_row_per_reference_piece_and_eos(trained_model_dir, precision):

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # forced bf16 warns where it is emulated (tests/test_precision.py)
        translator = open_translator(str(trained_model_dir), "cpu", precision)
    assert translator.precision.name == precision
    row_sum, batched = ROW_SUM_TOLERANCE[precision]
    sources = ["The dog sleeps.", "", "A small red car waits near the old house."]
    targets = ["Der Hund schläft.", "Ein Auto.", "Ein kleines rotes Auto wartet."]
    src_ids = translator.src_tokenizer.encode(sources)
    tgt_ids = translator.tgt_tokenizer.encode(targets)
    forced = translator.force_decode_ids(src_ids, tgt_ids, max_tokens=40)  # several batches
    assert forced[1] == (0.0, None)  # an empty side has nothing to align
    for (logp, attention), s, t in zip(forced, src_ids, tgt_ids):
        if s:
            assert attention.shape == (len(t) + 1, len(s))
            np.testing.assert_allclose(attention.sum(1), 1.0, atol=row_sum)
            assert logp < 0
    # The same as one pair at a time.
    alone = translator.force_decode(sources[2], targets[2])
    np.testing.assert_allclose(forced[2][1], alone.attention, atol=batched)


def test_align_files_keeps_line_count_and_order(trained_model_dir, corpus_dir, tmp_path, capsys):
    src = tmp_path / "src.txt"
    src.write_text("The dog sleeps.\n\nA small red car waits near the old house.\n")
    out = {name: tmp_path / name for name in ("a.pharaoh", "a.jsonl", "a.npz")}
    assert main(["align", str(trained_model_dir), "--src-file", str(src), "--pharaoh", str(out["a.pharaoh"]),
                 "--jsonl", str(out["a.jsonl"]), "--npz", str(out["a.npz"]), "--out-dir", str(tmp_path / "maps"),
                 "--words", "--format", "svg"]) == 0
    assert "aligned 3 sentence pairs" in capsys.readouterr().out
    lines = out["a.pharaoh"].read_text().split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""  # three lines, the empty one kept
    records = [json.loads(line) for line in out["a.jsonl"].read_text().splitlines()]
    assert [r["source"] for r in records] == ["The dog sleeps.", "", "A small red car waits near the old house."]
    for record, line in zip(records, lines):
        links = parse_pharaoh(line).sure
        assert {tuple(link) for link in record["links"]} == links
        # argmax: every target word gets exactly one source word, inside the sentence.
        assert sorted(j for _, j in links) == list(range(len(record["tgt_words"])))
        assert all(0 <= i < len(record["src_words"]) for i, _ in links)
    with np.load(out["a.npz"]) as arrays:
        assert sorted(arrays.files) == ["attention_0", "attention_2", "words_0", "words_2"]
        np.testing.assert_allclose(arrays["words_2"].sum(1), 1.0, atol=1e-3)
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["00001.svg", "00003.svg", "manifest.json"]


def test_align_reference_file_scores_against_the_demo_gold(trained_model_dir, corpus_dir, tmp_path, capsys):
    pred = tmp_path / "test.pharaoh"
    n = len((corpus_dir / "test.en").read_text().splitlines())
    for extra in ([], ["--shift-att"], ["--rule", "threshold", "--threshold", "0.2"],
                  ["--layer", "-1", "--head", "0"], ["--backward-model", str(trained_model_dir)],
                  ["--backward-model", str(trained_model_dir), "--symmetrize", "intersection"],
                  ["--backward-model", str(trained_model_dir), "--symmetrize", "mean"],
                  ["--merge", "max", "--rule", "threshold", "--threshold", "0.2"], ["--merge", "first"]):
        assert main(["align", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en"),
                     "--ref-file", str(corpus_dir / "test.de"), "--pharaoh", str(pred), *extra]) == 0
        assert len(pred.read_text().splitlines()) == n
        assert main(["aer", "--gold", str(corpus_dir / "test.align"), "--pred", str(pred), "--json",
                     str(tmp_path / "aer.json")]) == 0
        scores = json.loads((tmp_path / "aer.json").read_text())
        assert 0 <= scores["aer"] <= 100 and scores["sentences"] == n and scores["predicted"] > 0
    links, words = {}, {}
    for merge in ("mean", "max"):  # a max weighs every word pair at least as the mean: it links at least as much
        assert main(["align", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en"), "--ref-file",
                     str(corpus_dir / "test.de"), "--pharaoh", str(pred), "--rule", "threshold", "--threshold", "0.3",
                     "--merge", merge, "--jsonl", str(tmp_path / "pairs.jsonl")]) == 0
        links[merge] = [set(line.split()) for line in pred.read_text().splitlines()]
        words[merge] = [np.array(json.loads(line)["word_attention"] or [])
                        for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert all(m <= x for m, x in zip(links["mean"], links["max"]))
    assert all((x >= m - 1e-5).all() for m, x in zip(words["mean"], words["max"]))
    assert any(not np.allclose(m, x) for m, x in zip(words["mean"], words["max"]))
    capsys.readouterr()
    (tmp_path / "short.de").write_text("Ein Hund.\n")
    assert main(["align", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en"),
                 "--ref-file", str(tmp_path / "short.de"), "--pharaoh", str(pred)]) == 2
    assert "must pair line by line" in capsys.readouterr().err
    assert main(["align", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en")]) == 2
    assert "nothing to write" in capsys.readouterr().err
    assert main(["align", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en"), "--ref-file",
                 str(corpus_dir / "test.de"), "--pharaoh", str(pred), "--symmetrize", "union"]) == 2
    assert "give --backward-model too" in capsys.readouterr().err
    assert main(["align", str(trained_model_dir), "--src-file", str(corpus_dir / "test.en"), "--ref-file",
                 str(corpus_dir / "test.de"), "--explore", str(tmp_path / "page.html"), "--merge", "max"]) == 2
    assert "drop one of the two" in capsys.readouterr().err and not (tmp_path / "page.html").exists()


def test_symmetrisations_keep_what_both_directions_say_or_either():
    forward, backward = {(0, 0), (1, 1), (2, 1)}, {(0, 0), (1, 1), (2, 2)}
    assert SYMMETRISATIONS["intersection"](forward, backward) == {(0, 0), (1, 1)}
    assert SYMMETRISATIONS["union"](forward, backward) == forward | backward
    gdfa = SYMMETRISATIONS["grow-diag-final-and"](forward, backward)
    assert {(0, 0), (1, 1)} <= gdfa <= forward | backward


def test_mean_symmetrisation_reads_the_rule_from_both_directions_averaged():
    from mt.analysis.align_files import average_directions
    from mt.decoding.attention_alignment import AlignedPair, AlignOptions

    def pair(words):
        return AlignedPair("s", "t", word_attention=np.array(words, dtype=np.float32), links={(9, 9)})

    # forward: 2 target words x 3 source words; reverse: 3 source words x 2 target words
    forward = pair([[0.6, 0.4, 0.0], [0.1, 0.5, 0.4]])
    reverse = pair([[0.2, 0.8], [0.9, 0.1], [0.0, 1.0]])
    average_directions(forward, reverse, AlignOptions())
    np.testing.assert_allclose(forward.word_attention, [[0.4, 0.65, 0.0], [0.45, 0.3, 0.7]])
    assert forward.links == {(1, 0), (2, 1)}  # argmax of the mean: source 1 for target 0, source 2 for target 1
    forward = pair([[0.6, 0.4, 0.0], [0.1, 0.5, 0.4]])
    average_directions(forward, reverse, AlignOptions("threshold", 0.6))
    assert forward.links == {(1, 0), (2, 1)}
    average_directions(forward, pair([[1.0]]), AlignOptions())  # the reverse could not align it: forward kept
    assert forward.links == {(1, 0), (2, 1)}


def test_prepare_text_changes_words_in_place_so_gold_indices_hold():
    line = "it &apos;s  &quot;Mr. Speaker&quot; &amp;amp; R&amp;D"
    text = prepare_text(line, lowercase=True, unescape_moses=True)
    assert text == "it 's \"mr. speaker\" &amp; r&d"  # one pass: &amp;amp; becomes &amp;, not &
    assert len(text.split()) == len(line.split())
    assert prepare_text("Le Orateur", lowercase=False) == "Le Orateur"
    assert has_moses_escapes(["a", "l&apos;homme"]) and not has_moses_escapes(["R&D", "a;b"])


def test_align_pairs_file_matches_separate_files_and_reports_unknown_words(trained_model_dir, tmp_path, capsys):
    (tmp_path / "pairs.txt").write_text("The dog sleeps . ||| Der Hund schläft .\n\n"
                                        "A small ☃ car . ||| Ein kleines ☃ Auto .\n")
    (tmp_path / "src.txt").write_text("The dog sleeps .\n\nA small ☃ car .\n")
    (tmp_path / "tgt.txt").write_text("Der Hund schläft .\n\nEin kleines ☃ Auto .\n")
    a, b = tmp_path / "a.pharaoh", tmp_path / "b.pharaoh"
    assert main(["align", str(trained_model_dir), "--pairs", str(tmp_path / "pairs.txt"), "--pharaoh", str(a)]) == 0
    err = capsys.readouterr().err
    assert "outside the model's vocabulary" in err and "1 of 9 source words" in err
    assert main(["align", str(trained_model_dir), "--src-file", str(tmp_path / "src.txt"), "--ref-file",
                 str(tmp_path / "tgt.txt"), "--pharaoh", str(b)]) == 0
    assert a.read_text() == b.read_text() and len(a.read_text().splitlines()) == 3
    # Moses escapes are named, never read silently.
    (tmp_path / "esc.txt").write_text("the dog &apos;s ball . ||| des Hundes Ball .\n")
    assert main(["align", str(trained_model_dir), "--pairs", str(tmp_path / "esc.txt"), "--pharaoh", str(a)]) == 0
    assert "--unescape-moses" in capsys.readouterr().err
    assert main(["align", str(trained_model_dir), "--pairs", str(tmp_path / "esc.txt"), "--pharaoh", str(a),
                 "--unescape-moses", "--lowercase"]) == 0
    assert "--unescape-moses" not in capsys.readouterr().err
    assert len(a.read_text().split()) == 4  # argmax: one link per target word
    (tmp_path / "bad.txt").write_text("only a source\n")
    assert main(["align", str(trained_model_dir), "--pairs", str(tmp_path / "bad.txt"), "--pharaoh", str(a)]) == 2
    assert "bad.txt:1: expected 'source ||| target'" in capsys.readouterr().err


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_variant_aligns_files_with_every_rule(variant, tokenizers, corpus_dir, tmp_path):
    from mt.decoding.attention_alignment import align_pairs
    from mt.decoding.translator import Translator
    from mt.models import build_model

    torch.manual_seed(0)
    src_tok, tgt_tok = tokenizers
    translator = Translator(build_model(variant_config(variant), len(src_tok), len(tgt_tok)).eval(), src_tok, tgt_tok)
    sources = (corpus_dir / "test.en").read_text().splitlines()[:4] + [""]
    targets = (corpus_dir / "test.de").read_text().splitlines()[:4] + [""]
    for options in ({}, {"shift_att": True}, {"rule": "threshold", "threshold": 0.1}, {"layer": -1, "head": 0}):
        pairs = align_pairs(translator, sources, targets, **options)
        assert [p.source for p in pairs] == sources and pairs[-1].links == set()
        if variant.startswith("noattn"):
            assert all(p.attention is None and not p.links for p in pairs)
            continue
        for pair in pairs[:4]:
            if pair.attention is None:  # longer than the tiny Transformer's 64 positions: left unaligned, said so
                assert variant.startswith("transformer") and not pair.links
                assert max(len(pair.src_pieces), len(pair.tgt_pieces)) > 63
                continue
            assert pair.word_attention.shape == (len(pair.tgt_words), len(pair.src_words))
            if variant in GATED_VARIANTS:
                assert np.all(pair.word_attention >= 0)
            elif "hard" in variant:  # one source piece per step: a row sums to one less what went to EOS
                assert np.all(pair.word_attention.sum(1) <= 1 + 1e-6) and np.all(pair.word_attention >= 0)
            else:
                np.testing.assert_allclose(pair.word_attention.sum(1), 1.0, atol=1e-3)
            assert all(0 <= i < len(pair.src_words) and 0 <= j < len(pair.tgt_words) for i, j in pair.links)
            if options.get("rule") != "threshold":  # argmax: one link per target word that attended to a word
                attended = np.flatnonzero(pair.word_attention.max(1) > 0).tolist()
                assert sorted(j for _, j in pair.links) == attended
    path = tmp_path / "out.pharaoh"
    write_pharaoh(path, [p.links for p in pairs])
    assert len(path.read_text().split("\n")) == len(sources) + 1


def test_a_model_trained_shifted_is_read_with_shift_att_unless_told_otherwise(trained_model_dir, corpus_dir, tmp_path,
                                                                              capsys):
    import base64
    import shutil

    import yaml

    from mt.analysis.explore import build_explorer_data
    from mt.decoding.attention_alignment import align_pairs

    shifted_dir = tmp_path / "shifted"  # the same weights, its config saying train.alignment_shift=true
    shutil.copytree(trained_model_dir, shifted_dir)
    config = yaml.safe_load((shifted_dir / "config.yaml").read_text())
    config["train"].update(alignment_loss=1.0, alignment_shift=True)
    (shifted_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (shifted_dir / "manifest.json").unlink()  # edited on purpose (README, "A model directory")
    plain, shifted = open_translator(str(trained_model_dir), "cpu"), open_translator(str(shifted_dir), "cpu")
    assert not plain.alignment_shift and shifted.alignment_shift
    sources = (corpus_dir / "test.en").read_text().splitlines()[:6]
    targets = (corpus_dir / "test.de").read_text().splitlines()[:6]
    as_trained = align_pairs(shifted, sources, targets)
    assert all(p.shift_att for p in as_trained)
    assert [p.links for p in as_trained] == [p.links for p in align_pairs(plain, sources, targets, shift_att=True)]
    unshifted = align_pairs(shifted, sources, targets, shift_att=False)
    assert [p.links for p in unshifted] == [p.links for p in align_pairs(plain, sources, targets)]
    # the rows read differ (the tiny model's links may not: it attends to one word throughout)
    assert not all(np.allclose(a.word_attention, b.word_attention) for a, b in zip(unshifted, as_trained))

    # mt align: the same default, and --no-shift-att / --shift-att say it outright
    (tmp_path / "pairs.txt").write_text("".join(f"{s} ||| {t}\n" for s, t in zip(sources, targets)))
    out = {}
    for name, model, flags in (("default", shifted_dir, []), ("no", shifted_dir, ["--no-shift-att"]),
                               ("plain", trained_model_dir, []), ("plain_shift", trained_model_dir, ["--shift-att"])):
        out[name] = tmp_path / f"{name}.jsonl"
        assert main(["align", str(model), "--pairs", str(tmp_path / "pairs.txt"), "--jsonl", str(out[name]),
                     *flags]) == 0
        out[name] = [json.loads(line)["word_attention"] for line in out[name].read_text().splitlines()]
    capsys.readouterr()
    assert out["default"] == out["plain_shift"] != out["plain"] == out["no"]

    # the explorer draws the rows the links were read from: piece t's row is the step that reads it
    data = build_explorer_data([("plain", plain), ("shifted", shifted)], sources[:2], targets[:2])
    for sentence in data["sentences"]:
        drawn = []
        for model in sentence["models"]:
            view = model["forced"]
            drawn.append(np.frombuffer(base64.b64decode(view["map"]), "<u2").reshape(view["rows"], -1))
        assert not sentence["models"][0]["forced"]["shift_att"] and sentence["models"][1]["forced"]["shift_att"]
        np.testing.assert_array_equal(drawn[1][:-1], drawn[0][1:])
        assert not drawn[1][-1].any()  # no step reads the EOS
