"""An mt Transformer as a CTranslate2 model, built on CTranslate2's own spec API.

CTranslate2 is the inference engine OpenNMT-py, fairseq and Marian deploy with; its
``TransformerSpec`` describes mt's Transformer exactly: pre-norm blocks with a final norm on
each side, ReLU feed-forward, embeddings scaled by sqrt(d) plus mt's own position table
(interleaved sin/cos, or learned; set explicitly, for CTranslate2's built-in table
concatenates sin and cos), the self-attention's query/key/value fused as CTranslate2 wants
them and the cross-attention's key/value already fused in mt. The vocabularies are the
SentencePiece pieces in id order, so CTranslate2's token ids are mt's.

The exported directory is also an mt model directory: it keeps ``config.yaml`` and the two
SentencePiece models beside CTranslate2's files, and ``export.json`` says what it is, so
``mt translate`` / ``evaluate`` / ``align`` / ``compare`` / ``serve`` run it as they run a
PyTorch one (``mt.decoding.exported``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mt.config import AttentionReduction, ExperimentConfig
from mt.errors import MTError
from mt.model_dir import LoadedModel, check_derived_out, load_model_dir, write_derived, write_export_files
from mt.models.transformer import TransformerSeq2Seq

KIND = "ctranslate2 export"
QUANTIZATIONS = ("float32", "int8", "int8_float32", "int16", "bfloat16", "int8_bfloat16")


def _ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise MTError("exporting to CTranslate2 needs the ctranslate2 package: pip install 'mt[deploy]' "
                      "(scripts/setup.sh installs it)") from None
    return ctranslate2


def exportable(config: ExperimentConfig) -> None:
    """Refuses, in one line naming why, a model CTranslate2 cannot run."""
    if config.model.arch.value != "transformer":
        raise MTError(f"{config.model.name} is an RNN ({config.model.arch.value}) and CTranslate2 runs Transformers "
                      "only: export it with --to int8 instead")
    # CTranslate2 returns the mean of the first N heads of one layer: the last layer's heads
    # (mt's default) and one head 0 (one_head) are that; other maps would come out changed.
    model, reduction = config.model, config.model.attention_reduction
    if reduction is AttentionReduction.all_layers or (reduction is AttentionReduction.one_head
                                                      and model.alignment_head != 0):
        shown = ("all_layers" if reduction is AttentionReduction.all_layers
                 else f"one_head with model.alignment_head={model.alignment_head}")
        raise MTError(f"{model.name} uses attention_reduction={shown}, and CTranslate2 can only return the mean of "
                      "the first heads of one layer, so the export's attention would differ: export it with --to "
                      "int8 instead")


def build_spec(loaded: LoadedModel):
    """The ``TransformerSpec`` of a loaded Transformer, weights filled in (fp32 numpy)."""
    _ctranslate2()
    from ctranslate2.specs import common_spec, transformer_spec

    model = loaded.model
    assert isinstance(model, TransformerSeq2Seq)
    heads = model.decoder[0].self_attn.heads
    one = model.reduction == "one_head"  # head 0 of one layer (exportable refuses others); else the last layer's mean
    spec = transformer_spec.TransformerSpec.from_config(
        (len(model.encoder), len(model.decoder)), heads, pre_norm=True, activation=common_spec.Activation.RELU,
        alignment_layer=model.reduction_layer if one else -1, alignment_heads=1 if one else heads)

    def array(t):
        return t.detach().float().cpu().numpy()

    def linear(s, module, *more):
        s.weight = array(torch.cat([module.weight, *[m.weight for m in more]]))
        if module.bias is not None:
            s.bias = array(torch.cat([module.bias, *[m.bias for m in more]]))

    def norm(s, module):
        s.gamma, s.beta = array(module.weight), array(module.bias)

    def embedding(s, emb):
        tokens = s.embeddings[0] if isinstance(s.embeddings, list) else s.embeddings
        tokens.weight = array(emb.tokens.weight)
        s.scale_embeddings = True  # x sqrt(d), as mt's Embedding
        s.position_encodings.encodings = array(emb.learned.weight if emb.learned is not None else emb.table)

    def self_attention_and_ffn(s, attn, norm_in, ffn_norm, ff):
        """The parts encoder and decoder layers share: self-attention (q, k, v fused) and FFN."""
        norm(s.self_attention.layer_norm, norm_in)
        linear(s.self_attention.linear[0], attn.query, attn.key_value)
        linear(s.self_attention.linear[1], attn.out)
        norm(s.ffn.layer_norm, ffn_norm)
        linear(s.ffn.linear_0, ff[0])
        linear(s.ffn.linear_1, ff[3])

    embedding(spec.encoder, model.src_embed)
    for s, layer in zip(spec.encoder.layer, model.encoder):
        self_attention_and_ffn(s, layer.attn, layer.norm1, layer.norm2, layer.ff)
    norm(spec.encoder.layer_norm, model.encoder_norm)
    embedding(spec.decoder, model.tgt_embed)
    for s, layer in zip(spec.decoder.layer, model.decoder):
        self_attention_and_ffn(s, layer.self_attn, layer.norm1, layer.norm3, layer.ff)
        norm(s.attention.layer_norm, layer.norm2)
        linear(s.attention.linear[0], layer.cross_attn.query)
        linear(s.attention.linear[1], layer.cross_attn.key_value)  # k and v, fused in mt already
        linear(s.attention.linear[2], layer.cross_attn.out)
    norm(spec.decoder.layer_norm, model.decoder_norm)
    linear(spec.decoder.projection, model.output)

    spec.config.layer_norm_epsilon = model.encoder_norm.eps
    spec.config.add_source_eos = False        # mt's sources carry no EOS; decoding starts from BOS (<s>)
    src, tgt = loaded.src_tokenizer, loaded.tgt_tokenizer
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = (src.sp.id_to_piece(i) for i in (1, 2, 3))
    spec.config.decoder_start_token = spec.config.bos_token
    spec.register_source_vocabulary([src.sp.id_to_piece(i) for i in range(len(src))])
    spec.register_target_vocabulary([tgt.sp.id_to_piece(i) for i in range(len(tgt))])
    return spec


def export_ctranslate2(model_dir: str | Path, out: str | Path, quantization: str = "int8",
                       force: bool = False) -> Path:
    """Writes ``out``: CTranslate2's files (``quantization`` of the weights) beside mt's
    config, tokenizers and ``export.json``. An earlier CTranslate2 export at ``out`` is replaced
    once the new one is complete (with ``force``, an int8 export or an average too); any other
    non-empty folder is refused (mt.model_dir.check_derived_out)."""
    if quantization not in QUANTIZATIONS:
        raise MTError(f"--quantization {quantization} is not one CTranslate2 stores: choose one of "
                      f"{', '.join(QUANTIZATIONS)}")
    ct2 = _ctranslate2()
    source = Path(model_dir)
    check_derived_out(Path(out), KIND, [source], force)
    loaded = load_model_dir(source)
    exportable(loaded.config)
    spec = build_spec(loaded)
    spec.validate()
    spec.optimize(quantization=quantization)
    info = {"format": "ctranslate2", "quantization": quantization, "ctranslate2": ct2.__version__,
            "from": str(source.resolve()), "max_positions": loaded.model.max_positions,
            "attention": "the mean of the last decoder layer's heads"}

    def write(tmp: Path) -> None:
        spec.save(str(tmp))
        write_export_files(tmp, loaded, info)

    return write_derived(Path(out), KIND, write, "the CTranslate2 export", force)
