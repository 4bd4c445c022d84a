"""`genforge prepare` vs Hugging Face `datasets` map: tokenizing a .jsonl corpus to a flat token file.

    python bench/prepare_vs_datasets.py [--mb 50] [--workers 2] [--repeats 2] [--keep DIR]

A deterministic corpus of MB megabytes (bench/_corpus.py: Shakespeare paragraphs in documents of
1 to 60 paragraphs) is written as .jsonl, and one byte-level BPE tokenizer (8192 tokens) is trained
once on its first 5 MB with genforge.data.tokenizer.train_tokenizer; both sides load that same
tokenizer.json.

  ours: `genforge prepare CORPUS --field text --tokenizer-file tokenizer.json --workers N`
        (uint16 shards, train/val split, manifest; one shard per split at this size)
  ref:  `datasets.load_dataset("json")`, `.map(batched=True, num_proc=N)` with
        `tokenizers.Tokenizer.encode_batch`, the end-of-text id after each document, then the id
        column flattened from Arrow to numpy and written as one uint16 file with tofile.

Each timed run is a fresh subprocess (Python start and imports included), wall clock from spawn
to exit; the `datasets` cache (HF_DATASETS_CACHE and cache_dir) is a new temporary directory per
run, so no run reuses another's Arrow files. Runs alternate ours, ref, ours, ref, ...; a side's
number is its median; MB/s = input MB / seconds. Both sides must produce the same tokens: the
same count of every id (train + val for ours); the script says so when they do not. Ours encodes
with tiktoken where that gives the ids of `tokenizers` exactly (genforge/data/fast_bpe.py); set
GENFORGE_BPE_ENGINE=tokenizers to time it on `tokenizers` instead. The last line is
    ratio_mb_s=... ours_mb_s=... ref_mb_s=...
(ratio = ours / ref).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import first_bytes, write_jsonl

TOKENIZER = "bpe:8192"
TOKENIZER_SAMPLE_BYTES = 5_000_000
BATCH = 1000  # documents per map batch (the datasets default)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=50, help="corpus size in MB (default 50)")
    ap.add_argument("--workers", type=int, default=2, help="processes on both sides (default 2)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per side (default 2)")
    ap.add_argument("--keep", help="work in this directory and keep it (default: a temporary one)")
    ap.add_argument("--_ref", nargs=4, metavar=("CORPUS", "TOKENIZER", "OUT", "CACHE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._ref:
        ref_run(*args._ref, workers=args.workers)
        return
    work = Path(args.keep or tempfile.mkdtemp(prefix="prepare_vs_datasets-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        bench(work, args.mb, args.workers, args.repeats)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def bench(work: Path, mb: float, workers: int, repeats: int) -> None:
    import datasets
    import tokenizers

    corpus = work / "corpus.jsonl"
    t = time.perf_counter()
    size, docs = write_jsonl(corpus, mb)
    print(f"corpus: {corpus} {size / 1e6:.1f} MB, {docs:,} documents ({time.perf_counter() - t:.1f} s to write)")
    tok_file = work / "tokenizer.json"
    t = time.perf_counter()
    train_once(tok_file)
    print(f"tokenizer: {TOKENIZER} on the first {TOKENIZER_SAMPLE_BYTES / 1e6:.0f} MB of documents "
          f"({time.perf_counter() - t:.1f} s, not timed below)")
    print(f"datasets {datasets.__version__}, tokenizers {tokenizers.__version__}, workers={workers}, "
          f"repeats={repeats}, cpus={os.cpu_count()}")
    times: dict[str, list[float]] = {"ours": [], "ref": []}
    hists: dict[str, np.ndarray] = {}
    for r in range(repeats):
        for side in ("ours", "ref"):
            out = work / f"out-{side}"
            shutil.rmtree(out, ignore_errors=True)
            cache = Path(tempfile.mkdtemp(prefix="hf-cache-", dir=work))
            if side == "ours":
                cmd = [genforge_cli(), "prepare", str(corpus), "--field", "text",
                       "--tokenizer", TOKENIZER, "--tokenizer-file", str(tok_file), "--workers", str(workers),
                       "--out", str(out)]
            else:
                cmd = [sys.executable, __file__, "--workers", str(workers), "--_ref", str(corpus), str(tok_file),
                       str(out), str(cache)]
            env = dict(os.environ, HF_DATASETS_CACHE=str(cache), HF_DATASETS_OFFLINE="1",
                       TOKENIZERS_PARALLELISM="false")
            t, cpu = time.perf_counter(), _children_cpu()
            proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
            dt, cpu = time.perf_counter() - t, _children_cpu() - cpu
            if proc.returncode:
                sys.exit(f"{side} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
            times[side].append(dt)
            hists[side] = token_histogram(side, out)
            print(f"run {r + 1} {side:4s}: {dt:7.2f} s  {size / 1e6 / dt:6.2f} MB/s  {hists[side].sum():,} tokens  "
                  f"(CPU {cpu:.2f} s in all processes)")
            shutil.rmtree(cache, ignore_errors=True)
    if np.array_equal(hists["ours"], hists["ref"]):
        print(f"token counts match: {hists['ours'].sum():,}, and so does the count of every id")
    else:
        print(f"TOKENS DIFFER: ours {hists['ours'].sum():,} vs ref {hists['ref'].sum():,}, "
              f"{int((hists['ours'] != hists['ref']).sum())} ids with other counts")
    rates = {side: size / 1e6 / statistics.median(ts) for side, ts in times.items()}
    for side, ts in times.items():
        print(f"{side}: median {statistics.median(ts):.2f} s ({', '.join(f'{t:.2f}' for t in ts)}), {rates[side]:.2f} MB/s")
    print(f"ratio_mb_s={rates['ours'] / rates['ref']:.2f} ours_mb_s={rates['ours']:.2f} ref_mb_s={rates['ref']:.2f}")


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (theirs included): on a shared
    machine this moves less with other people's load than wall time does."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def genforge_cli() -> str:
    """The `genforge` console script next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "genforge"
    return str(here) if here.exists() else shutil.which("genforge") or sys.exit("genforge is not installed")


def train_once(path: Path) -> None:
    from genforge.data.tokenizer import train_tokenizer

    train_tokenizer(TOKENIZER, first_bytes(TOKENIZER_SAMPLE_BYTES)).save(path)


def token_histogram(side: str, out: Path) -> np.ndarray:
    """How often each id occurs in a side's output (ours splits documents into train and val, so
    the order differs; the counts of every id must not)."""
    if side == "ref":
        files = [out / "tokens.bin"]
    else:
        manifest = json.loads((out / "manifest.json").read_text())
        files = [out / s["file"] for shards in manifest["splits"].values() for s in shards]
    return sum(np.bincount(np.fromfile(f, dtype=np.uint16), minlength=1 << 16) for f in files)


_tok = None


def _encode(batch: dict) -> dict:
    """datasets map function: ids of each text followed by the end-of-text id."""
    global _tok
    if _tok is None:
        import tokenizers
        _tok = tokenizers.Tokenizer.from_file(os.environ["BENCH_TOKENIZER"])
    eot = _tok.token_to_id("<|endoftext|>")
    return {"ids": [e.ids + [eot] for e in _tok.encode_batch(batch["text"], add_special_tokens=False)]}


def ref_run(corpus: str, tok_file: str, out: str, cache: str, workers: int) -> None:
    """The reference side, in its own process: load, map, flatten to one uint16 file."""
    import datasets

    os.environ["BENCH_TOKENIZER"] = tok_file
    datasets.disable_progress_bars()
    ds = datasets.load_dataset("json", data_files=corpus, split="train", cache_dir=cache)
    ds = ds.map(_encode, batched=True, batch_size=BATCH, num_proc=workers, remove_columns=ds.column_names)
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / "tokens.bin", "wb") as f:
        for chunk in ds.data.column("ids").chunks:
            chunk.flatten().to_numpy().astype(np.uint16).tofile(f)


if __name__ == "__main__":
    main()
