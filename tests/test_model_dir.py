import pickle

import pytest
import torch

from mt.config import ExperimentConfig
from mt.data.batching import collate
from mt.errors import MTError
from mt.model_dir import load_model_dir, save_model_dir
from mt.models import build_model

from .conftest import tiny_model_config


@pytest.fixture
def saved(tmp_path, tokenizers):
    src_tok, tgt_tok = tokenizers
    torch.manual_seed(0)
    config = ExperimentConfig(model=tiny_model_config("bahdanau"))
    model = build_model(config.model, len(src_tok), len(tgt_tok)).eval()
    path = save_model_dir(tmp_path / "model", model, config, src_tok, tgt_tok)
    return path, model


def test_round_trip_gives_identical_outputs(saved):
    path, model = saved
    loaded = load_model_dir(path)
    batch = collate([[5, 6, 7]], [[8, 9]])
    a, attn_a = model(batch.src, batch.src_mask, batch.tgt_in)
    b, attn_b = loaded.model(batch.src, batch.src_mask, batch.tgt_in)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(attn_a, attn_b)
    assert loaded.config.model.attention.type.value == "bahdanau"


def test_saving_again_replaces_the_directory_atomically(saved, tokenizers):
    path, model = saved
    save_model_dir(path, model, ExperimentConfig(model=tiny_model_config("bahdanau")), *tokenizers)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"]


def test_corrupt_or_pickled_weights_are_refused_with_a_clear_error(saved):
    path, _ = saved
    (path / "manifest.json").unlink()  # the checks behind the manifest's
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(MTError, match="corrupt"):
        load_model_dir(path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    weights.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(MTError, match="corrupt"):
        load_model_dir(path)


def test_missing_parts_and_mismatched_config_are_named(saved):
    path, _ = saved
    (path / "manifest.json").unlink()  # a folder from before manifests, or assembled by hand
    config = (path / "config.yaml").read_text()
    (path / "config.yaml").write_text(config.replace("hidden_dim: 24", "hidden_dim: 32"))
    with pytest.raises(MTError, match="does not match config.yaml"):
        load_model_dir(path)
    (path / "tgt.model").unlink()
    with pytest.raises(MTError, match="tgt.model is missing"):
        load_model_dir(path)
