"""The `import` and `export` verbs (registered in genforge/cli/serving.py)."""
from __future__ import annotations

from genforge.errors import GenforgeError


def add_import(sub) -> None:
    p = sub.add_parser("import", help="import a checkpoint from another layout (hf: a Hugging Face directory)")
    p.add_argument("format", choices=["hf"])
    p.add_argument("source", help="a local HF checkpoint directory (or a hub repo id org/name, downloaded if online)")
    p.add_argument("--out", required=True, help="genforge checkpoint directory to write")

    def run(a):
        from genforge.hf.io import import_hf

        print(f"checkpoint: {import_hf(a.source, a.out)}")

    p.set_defaults(func=run)


def add_export(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to another layout (hf: a Hugging Face directory)")
    p.add_argument("format", choices=["hf"])
    p.add_argument("ckpt", help="checkpoint directory, or a run directory (uses its latest)")
    p.add_argument("--out", required=True, help="directory to write (config.json, model.safetensors, tokenizer...)")
    p.add_argument("--max-shard-size", help="split the weights into shards of at most this size (e.g. 2GB)")

    def run(a):
        from genforge.data.prepare import parse_bytes
        from genforge.hf.io import export_hf

        size = parse_bytes(a.max_shard_size) if a.max_shard_size else None
        if size is not None and size < 1:
            raise GenforgeError(f"--max-shard-size {a.max_shard_size}: must be positive")
        out = export_hf(a.ckpt, a.out, size)
        print(f"exported: {out}")
        _note_dropped_head(a.ckpt)

    p.set_defaults(func=run)


def _note_dropped_head(ckpt) -> None:
    import sys

    from genforge import checkpoint as ckpt_io

    model = ckpt_io.read_config(ckpt_io.resolve(ckpt)).get("model") or {}
    labels = model.get("n_labels")
    if labels and model.get("head_pool", "mean") != "cls":  # a classifier's head on the pooler is exported
        print(f"note: the {labels}-output head reads the mean-pooled states, which no Hugging Face class does, so it "
              "was not exported (BertModel only); the genforge checkpoint keeps it. Classifiers fine-tuned now put "
              "their head on BERT's pooler and export as BertForSequenceClassification", file=sys.stderr)
