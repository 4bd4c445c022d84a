"""Conversion between genforge's Encoder and `transformers`' BertModel layout: config dicts and
state dicts, no `transformers` import. Weights under a `bert.` prefix (BertForMaskedLM,
BertForSequenceClassification...) are read too. A classifier whose head reads BERT's pooler
(head_pool=cls) is BertForSequenceClassification (pooler on [CLS] -> dropout -> classifier) both
ways; other task heads (masked LM) are not read, and a head on mean-pooled states, which no HF
class has, is not written."""
from __future__ import annotations

import torch

from genforge.errors import CheckpointError
from genforge.models.encoder import Encoder, EncoderConfig

# (ours, HF) for weights that map one to one; {i} is the layer
_EMB = [("embeddings.wte.weight", "embeddings.word_embeddings.weight"),
        ("embeddings.wpe.weight", "embeddings.position_embeddings.weight"),
        ("embeddings.wtt.weight", "embeddings.token_type_embeddings.weight"),
        ("embeddings.ln.weight", "embeddings.LayerNorm.weight"), ("embeddings.ln.bias", "embeddings.LayerNorm.bias")]
_LAYER = [("attn.c_proj", "attention.output.dense"), ("ln_1", "attention.output.LayerNorm"),
          ("mlp.c_fc", "intermediate.dense"), ("mlp.c_proj", "output.dense"), ("ln_2", "output.LayerNorm")]
_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


def to_hf(model: Encoder) -> tuple[dict, dict[str, torch.Tensor]]:
    """(HF config.json dict, state dict): BertForSequenceClassification for a head on the pooler
    (labels LABEL_0...; the caller may name them in id2label), else BertModel (a head on the
    mean-pooled states is dropped)."""
    cfg = model.config
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    out = {hf: sd[ours] for ours, hf in _EMB}
    for i in range(cfg.n_layer):
        ours, hf = f"h.{i}.", f"encoder.layer.{i}."
        for a, b in _LAYER:
            for p in ("weight", "bias"):
                out[f"{hf}{b}.{p}"] = sd[f"{ours}{a}.{p}"]
        for p in ("weight", "bias"):
            q, k, v = sd[f"{ours}attn.c_attn.{p}"].chunk(3)
            out[f"{hf}attention.self.query.{p}"], out[f"{hf}attention.self.key.{p}"], out[f"{hf}attention.self.value.{p}"] = q, k, v
    if cfg.pooler:
        out["pooler.dense.weight"], out["pooler.dense.bias"] = sd["pooler.weight"], sd["pooler.bias"]
    config = dict(
        architectures=["BertModel"], model_type="bert", vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, intermediate_size=cfg.mlp_hidden,
        hidden_act="gelu" if cfg.activation == "gelu" else "gelu_new", max_position_embeddings=cfg.block_size,
        type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.norm_eps, hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout, pad_token_id=cfg.pad_id, position_embedding_type="absolute",
    )
    if exports_head(cfg):
        out = {f"bert.{k}": v for k, v in out.items()}
        out["classifier.weight"], out["classifier.bias"] = sd["head.weight"], sd["head.bias"]
        names = [f"LABEL_{i}" for i in range(cfg.n_labels)]
        config.update(architectures=["BertForSequenceClassification"], classifier_dropout=None,
                      id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
                      problem_type="regression" if cfg.n_labels == 1 else "single_label_classification")
    return config, {k: v.contiguous() for k, v in out.items()}


def exports_head(cfg: EncoderConfig) -> bool:
    """Whether to_hf writes the model's head (BertForSequenceClassification's classifier)."""
    return bool(cfg.n_labels) and cfg.head_pool == "cls"


def from_hf(c: dict, hf_state: dict[str, torch.Tensor], n_labels: int = 0) -> Encoder:
    """A genforge Encoder from a BERT config dict and state dict. BertForSequenceClassification's
    classifier becomes the head (on the pooler); otherwise n_labels > 0 adds a new one."""
    if c.get("model_type") != "bert":
        raise CheckpointError(f"config.json: model_type={c.get('model_type')!r} is not a BERT encoder")
    if c.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"config.json: position_embedding_type={c['position_embedding_type']!r} is not supported")
    act = c.get("hidden_act", "gelu")
    if act not in _ACTS:
        raise CheckpointError(f"config.json: hidden_act={act!r} is not supported (expected one of {sorted(_ACTS)})")
    sd = {k.removeprefix("bert."): v for k, v in hf_state.items()}
    head = sd.get("classifier.weight")
    if head is not None:
        if n_labels and n_labels != head.shape[0]:
            raise CheckpointError(f"the checkpoint's classifier has {head.shape[0]} labels, not n_labels={n_labels}")
        n_labels = head.shape[0]
    pooler = "pooler.dense.weight" in sd
    if head is not None and not pooler:
        raise CheckpointError("HF weights: a classifier without BERT's pooler is not BertForSequenceClassification's layout")
    try:
        cfg = EncoderConfig(
            vocab_size=c["vocab_size"], block_size=c["max_position_embeddings"], type_vocab_size=c.get("type_vocab_size", 2),
            n_layer=c["num_hidden_layers"], n_head=c["num_attention_heads"], n_embd=c["hidden_size"],
            mlp_hidden=c["intermediate_size"], activation=_ACTS[act], norm_eps=c.get("layer_norm_eps", 1e-12),
            dropout=c.get("hidden_dropout_prob", 0.1), pooler=pooler, n_labels=n_labels,
            head_pool="cls" if n_labels and pooler else "mean", pad_id=c.get("pad_token_id") or 0,
        )
    except KeyError as e:
        raise CheckpointError(f"config.json: missing field {e.args[0]!r} of a BERT config") from None
    try:
        out = {ours: sd[hf] for ours, hf in _EMB}
        for i in range(cfg.n_layer):
            ours, hf = f"h.{i}.", f"encoder.layer.{i}."
            for a, b in _LAYER:
                for p in ("weight", "bias"):
                    out[f"{ours}{a}.{p}"] = sd[f"{hf}{b}.{p}"]
            for p in ("weight", "bias"):
                out[f"{ours}attn.c_attn.{p}"] = torch.cat([sd[f"{hf}attention.self.{n}.{p}"] for n in ("query", "key", "value")])
        if cfg.pooler:
            out["pooler.weight"], out["pooler.bias"] = sd["pooler.dense.weight"], sd["pooler.dense.bias"]
        if head is not None:
            out["head.weight"], out["head.bias"] = head, sd["classifier.bias"]
    except KeyError as e:
        raise CheckpointError(f"HF weights do not match config.json: {e.args[0]!r} is missing") from None
    model = Encoder(cfg)
    if cfg.n_labels and head is None:  # a fresh head keeps its init
        out.update({k: v for k, v in model.state_dict().items() if k.startswith("head.")})
    _load_exact(model, out)
    return model


def _load_exact(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    for k, v in sd.items():
        if k in own and own[k].shape != v.shape:
            raise CheckpointError(f"HF weights do not match config.json: {k} has shape {tuple(v.shape)}, "
                                  f"the config says {tuple(own[k].shape)}")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"HF weights do not match config.json: missing {missing[:3]}, unexpected {unexpected[:3]}")
