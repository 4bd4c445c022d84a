"""Peak memory of `genforge prepare` and of training reads, small corpus vs large corpus.

    python bench/prepare_memory.py [--small-mb 100] [--large-mb 2000] [--workers 2] [--iters 300]

The claim under test: memory does not grow with corpus size, neither while preparing (documents
are streamed, a bounded number of batches in flight, shards written as they fill) nor while
training (shards are memory-mapped, windows sampled from them).

1. prepare: two deterministic .jsonl corpora (or, with --layout txt, two single plain text files) (bench/_corpus.py, written as a stream) of SMALL and
   LARGE MB are prepared with `genforge prepare --tokenizer bpe:8192 --tokenizer-sample 5MB
   --workers N` (same 5 MB prefix, so the same tokenizer). The small one has the default shard
   size, so one train shard of S tokens; the large one uses --shard-tokens S, so LARGE/SMALL train
   shards of S tokens each.
2. train: `genforge train` of a tiny GPT (2 layers, 64 wide, block 64, batch 8, ITERS steps, CPU,
   one thread) on each prepared directory: 1 shard of S tokens vs LARGE/SMALL shards of S.

Peak RSS is ru_maxrss from os.wait4 on the child: the largest single process of its tree (the
parent or one of its workers, not their sum). A sampler also reads /proc every 50 ms for the
peak of the summed RSS of the whole tree, and the root's peak RssAnon (heap) and RssFile
(file-backed pages, memory-mapped shards among them: resident, counted in RSS, but page cache
the kernel can take back), and each process's VmHWM (its peak RSS as the kernel keeps it; the last
value seen before it exits), so a peak in the root can be told from one in a worker. Growth = large - small. The last line is
    rss_growth_prepare_mb=... rss_growth_train_mb=...
(ru_maxrss growth, MB = 10^6 bytes).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import write_jsonl, write_txt

TOKENIZER = "bpe:8192"
TRAIN_CONFIG = """\
family: gpt
model: {{n_layer: 2, n_head: 2, n_embd: 64, block_size: 64, dropout: 0.0, bias: false}}
data: {{path: {data}, batch_size: 8}}
train: {{max_iters: {iters}, eval_interval: {eval_interval}, eval_iters: 5, log_interval: 50, warmup_iters: 10,
        device: cpu, threads: 1, dtype: float32, out_dir: {out}}}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small-mb", type=float, default=100, help="small corpus in MB (default 100)")
    ap.add_argument("--large-mb", type=float, default=2000, help="large corpus in MB (default 2000)")
    ap.add_argument("--workers", type=int, default=2, help="prepare workers (default 2)")
    ap.add_argument("--iters", type=int, default=300, help="training steps per run (default 300)")
    ap.add_argument("--layout", choices=("jsonl", "txt"), default="jsonl",
                    help="jsonl: many documents, one per line; txt: ONE plain text file (read in pieces)")
    ap.add_argument("--keep", help="work in this directory and keep it (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="prepare_memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        bench(work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def bench(work: Path, args) -> None:
    print(f"workers={args.workers}, iters={args.iters}, cpus={os.cpu_count()}, work dir {work}")
    peaks: dict[str, dict[str, dict]] = {"prepare": {}, "train": {}}
    shard_tokens = None
    for name, mb in (("small", args.small_mb), ("large", args.large_mb)):
        corpus = work / f"{name}.{args.layout}"
        t = time.perf_counter()
        size, docs = (write_jsonl if args.layout == "jsonl" else write_txt)(corpus, mb)
        print(f"{name}: {size / 1e6:.1f} MB, {docs:,} documents ({time.perf_counter() - t:.1f} s to write)")
        out = work / f"data-{name}"
        field = ["--field", "text"] if args.layout == "jsonl" else []
        cmd = [genforge_cli(), "prepare", str(corpus), *field, "--tokenizer", TOKENIZER,
               "--tokenizer-sample", "5MB", "--workers", str(args.workers), "--out", str(out)]
        if shard_tokens:
            cmd += ["--shard-tokens", str(shard_tokens)]
        p = measure(cmd)
        peaks["prepare"][name] = p
        manifest = json.loads((out / "manifest.json").read_text())
        train = manifest["splits"]["train"]
        shard_tokens = shard_tokens or train[0]["tokens"]
        print(f"  prepare {name}: {p['seconds']:.1f} s ({size / 1e6 / p['seconds']:.2f} MB/s), "
              f"{sum(s['tokens'] for s in train):,} train tokens in {len(train)} shard(s); {fmt(p)}")
        corpus.unlink()  # only the prepared tokens are needed from here on
    for name in ("small", "large"):
        data = work / f"data-{name}"
        cfg = work / f"train-{name}.yaml"
        cfg.write_text(TRAIN_CONFIG.format(data=data, iters=args.iters, eval_interval=max(1, args.iters // 2),
                                           out=work / f"run-{name}"))
        p = measure([genforge_cli(), "train", str(cfg), "--no-progress"])
        peaks["train"][name] = p
        shards = len(json.loads((data / "manifest.json").read_text())["splits"]["train"])
        print(f"  train on {name} ({shards} train shard(s) of <= {shard_tokens:,} tokens): "
              f"{p['seconds']:.1f} s; {fmt(p)}")
    growth = {}
    for stage, runs in peaks.items():
        g = {k: runs["large"][k] - runs["small"][k] for k in ("maxrss", "tree", "anon", "file", "root_hwm", "child_hwm")}
        growth[stage] = g["maxrss"]
        print(f"{stage} growth small -> large: ru_maxrss {g['maxrss']:+.1f} MB, tree {g['tree']:+.1f} MB, "
              f"RssAnon {g['anon']:+.1f} MB, RssFile {g['file']:+.1f} MB, VmHWM root {g['root_hwm']:+.1f} MB, "
              f"largest child {g['child_hwm']:+.1f} MB")
    print(f"rss_growth_prepare_mb={growth['prepare']:.1f} rss_growth_train_mb={growth['train']:.1f}")


def fmt(p: dict) -> str:
    return (f"peak ru_maxrss {p['maxrss']:.1f} MB, tree (sampled) {p['tree']:.1f} MB, "
            f"root RssAnon {p['anon']:.1f} MB + RssFile {p['file']:.1f} MB; "
            f"VmHWM root {p['root_hwm']:.1f} MB, largest child {p['child_hwm']:.1f} MB")


def genforge_cli() -> str:
    """The `genforge` console script next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "genforge"
    return str(here) if here.exists() else shutil.which("genforge") or sys.exit("genforge is not installed")


def measure(cmd: list[str]) -> dict:
    """Run cmd; return its wall seconds and peak memory in MB (see the module docstring)."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sampler = _Sampler(proc.pid)
    sampler.start()
    output = proc.stdout.read()  # drain, so the child never blocks on a full pipe
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop()
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output.decode(errors='replace')[-3000:]}")
    return {"seconds": seconds, "maxrss": usage.ru_maxrss * 1024 / 1e6, "tree": sampler.tree / 1e6,
            "anon": sampler.anon / 1e6, "file": sampler.file / 1e6,
            "root_hwm": sampler.hwm.get(proc.pid, 0) / 1e6,
            "child_hwm": max((v for k, v in sampler.hwm.items() if k != proc.pid), default=0) / 1e6}


class _Sampler(threading.Thread):
    """Every 50 ms: the summed VmRSS of pid and its descendants, and pid's RssAnon and RssFile."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.tree, self.anon, self.file, self._done = pid, 0, 0, 0, threading.Event()
        self.hwm: dict[int, int] = {}  # pid: its VmHWM (the kernel's own peak RSS), last seen

    def run(self) -> None:
        while not self._done.wait(0.05):
            total = 0
            for pid in _tree(self.pid):
                status = _status(pid)
                total += status.get("VmRSS", 0)
                if "VmHWM" in status:
                    self.hwm[pid] = status["VmHWM"]
                if pid == self.pid:
                    self.anon = max(self.anon, status.get("RssAnon", 0))
                    self.file = max(self.file, status.get("RssFile", 0))
            self.tree = max(self.tree, total)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


def _status(pid: int) -> dict[str, int]:
    """Byte values of /proc/PID/status's memory lines; {} once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f)
                    if v.strip().endswith("kB")}
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    main()
