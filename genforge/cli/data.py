"""The `prepare` and `audit` verbs: token shards from a corpus, and a bias audit of a dataset."""
from __future__ import annotations

import sys

from genforge.cli._common import comparison


def add_prepare(sub):
    p = sub.add_parser("prepare", help="tokenize a text corpus into token shards")
    p.add_argument("source", nargs="+",
                   help="text files (.txt/.md, also .gz/.zst), folders, globs ('corpus/*.txt'), .jsonl[.gz|.zst] "
                        "or .parquet files (with --field), a saved Hugging Face dataset directory, "
                        "builtin:shakespeare, or jsb:PATH (the JSB Chorales JSON: its train/val/test frames as tokens)")
    p.add_argument("--tokenizer", default="char", help="char | bpe:VOCAB (default char)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--field", help="required for .jsonl, .parquet and datasets sources: the record key or column "
                   "holding the text (no default)")
    p.add_argument("--errors", choices=["strict", "replace"], default="strict",
                   help="invalid UTF-8: a bad record (strict) or substitute U+FFFD (replace)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of the documents held out for validation")
    p.add_argument("--tokenizer-file", help="reuse this tokenizer.json instead of training one")
    p.add_argument("--workers", type=int, default=1, help="tokenizer processes (output is the same for any N)")
    p.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard file (default 100M)")
    p.add_argument("--tokenizer-sample", metavar="BYTES",
                   help="train the tokenizer on the first BYTES of text only (e.g. 100MB; default: all of it)")
    p.add_argument("--on-bad-record", choices=["error", "skip"], default="error",
                   help="a bad record (invalid UTF-8 or JSON, missing field, unknown char): stop (default) "
                        "or log it to stderr and skip it")
    p.add_argument("--max-bad-ratio", type=float, default=0.01,
                   help="with --on-bad-record skip, stop once more than this fraction of records is bad (0.01)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for piped logs)")
    p.add_argument("--cda", metavar="PAIRS", help="counterfactual data augmentation of the train split: a word-pair "
                   "file ('he she' per line) or a bias spec YAML with swaps (docs/bias.md)")
    p.add_argument("--cda-mode", choices=["augment", "replace"], default="augment",
                   help="--cda: add each document's counterfactual (augment) or write it instead (replace)")

    def run(a):
        from genforge.data.cda import load_swaps
        from genforge.data.prepare import parse_bytes, prepare
        from genforge.data.shards import TokenData

        sample = parse_bytes(a.tokenizer_sample) if a.tokenizer_sample else None
        out = prepare(a.source, a.tokenizer, a.out, a.field, a.errors, a.val_fraction, a.shard_tokens,
                      a.tokenizer_file, workers=a.workers, tokenizer_sample=sample, on_bad_record=a.on_bad_record,
                      max_bad_ratio=a.max_bad_ratio, progress=not a.no_progress,
                      cda=load_swaps(a.cda) if a.cda else None, cda_mode=a.cda_mode)
        data = TokenData(out)
        print(f"{out}: vocab {data.vocab_size}, {data.tokens('train'):,} train + {data.tokens('val'):,} val tokens ({data.dtype})")

    p.set_defaults(func=run)


def add_audit(sub):
    p = sub.add_parser("audit", help="bias audit of a dataset: attribute balance, co-occurrence, duplicates (docs/bias.md)")
    p.add_argument("data", help="prepared token data, text/jsonl files or folders, an image dataset or a captioned "
                   "one (builtin:scenes, metadata.jsonl folders, .npz with captions)")
    p.add_argument("--spec", help="bias spec YAML: attributes, targets, co-occurrence pairs (docs/bias.md; default: "
                   "duplicates only for text, the label distribution for images)")
    p.add_argument("--out", help="write audit.md, audit.json and PNG charts here (default: print the Markdown only)")
    p.add_argument("--kind", choices=["tokens", "text", "images", "captions"], help="what DATA is (default: detected)")
    p.add_argument("--field", help="jsonl/parquet: the key holding the text (default text)")
    p.add_argument("--no-duplicates", action="store_true", help="skip the exact and near-duplicate search")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--baseline", metavar="DATA", help="the data before a mitigation (e.g. prepared without --cda), "
                   "audited the same way: prints both headline numbers and the change")

    def run(a):
        from genforge.data.audit import as_json, audit, markdown, summary, write_report
        from genforge.eval.bias_spec import load_spec

        spec = load_spec(a.spec) if a.spec else None
        report = audit(a.data, spec, a.kind, a.field, duplicates=not a.no_duplicates)
        if a.baseline:
            before = audit(a.baseline, spec, a.kind, a.field, duplicates=not a.no_duplicates)
            print(as_json({"baseline": before, "data": report}) if a.json else
                  comparison(summary(before), summary(report), ("baseline", "data")))
            return
        if a.out:
            paths = write_report(report, a.out)
            print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
        print(as_json(report) if a.json else markdown(report).rstrip("\n"))

    p.set_defaults(func=run)
