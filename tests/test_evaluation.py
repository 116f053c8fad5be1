import json

import numpy as np
import pytest

from mt.errors import DataError
from mt.evaluation.metrics import corpus_scores, scores_by_length
from mt.evaluation.report import format_table
from mt.visualization.heatmap import plot_attention


def test_perfect_and_empty_output_score_100_and_0():
    refs = ["Der Hund schläft im Garten.", "Die Frau liest ein Buch."]
    assert corpus_scores(refs, refs).bleu == 100.0
    assert corpus_scores(["", ""], refs).bleu == 0.0
    with pytest.raises(DataError):
        corpus_scores(refs[:1], refs)


def test_scores_by_length_groups_by_source_words():
    sources = ["a b c", "a " * 15, "a " * 25]
    refs = ["x y z w", "p q r s", "m n o p"]
    hyps = ["x y z w", "p q r s", "nothing alike"]
    buckets = scores_by_length(sources, hyps, refs)
    assert [b.bucket for b in buckets] == ["1-10", "11-20", "21-30"]
    assert [b.sentences for b in buckets] == [1, 1, 1]
    assert buckets[0].bleu == 100.0 and buckets[2].bleu < 10
    json.dumps([b.__dict__ for b in buckets])  # data, not only a printout


def test_table_aligns_columns():
    table = format_table(["model", "BLEU"], [["a", "1.00"], ["long name", "22.50"]]).splitlines()
    assert len({len(line) for line in table}) == 1


def test_heatmap_checks_shape_and_writes_png(tmp_path):
    with pytest.raises(ValueError):
        plot_attention(np.ones((2, 3)), ["a", "b"], ["x", "y"], tmp_path / "bad.png")
    path = plot_attention(np.eye(3), ["▁a", "▁b", "c"], ["▁x", "▁y", "</s>"], tmp_path / "ok.png", title="t")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_many_models_side_by_side_wrap_onto_rows(tmp_path):
    """A study of a dozen models gave one strip a dozen panels wide; past four they wrap."""
    import matplotlib.image

    from mt.visualization.heatmap import plot_attention_row

    panel = ("m", np.eye(3), ["a", "b", "c"], ["x", "y", "z"])
    shapes = {}
    for n in (3, 6, 9):
        path = plot_attention_row([(f"model {i}", *panel[1:]) for i in range(n)], tmp_path / f"{n}.png")
        shapes[n] = matplotlib.image.imread(path).shape[:2]  # (height, width)
    assert shapes[3][0] == shapes[6][0] / 2 == shapes[9][0] / 3  # one, two, three rows of panels
    assert shapes[6][1] == shapes[9][1] > shapes[3][1]  # at most four panels across
    with pytest.raises(ValueError, match="model 1"):
        plot_attention_row([panel, ("model 1", np.ones((2, 3)), ["a", "b", "c"], ["x", "y", "z"])],
                           tmp_path / "bad.png")
