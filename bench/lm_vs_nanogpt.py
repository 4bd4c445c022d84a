"""genforge vs nanoGPT: the same character-level Shakespeare run, side by side.

    python bench/lm_vs_nanogpt.py --nanogpt PATH_TO_NANOGPT_CHECKOUT \
        --data ../shared/data/tinyshakespeare/input.txt [--repeats 2] [--iters 2000]

Trains nanoGPT's CPU recipe (4 layers, 4 heads, 128 wide, block 64, batch 12, lr 1e-3) with
nanoGPT's own train.py and with `genforge train lm/shakespeare_char` (genforge/recipes/), alternating
A B A B, each in its own process with the same thread count. Reports per run: median ms/iter as each
side times its own iterations, and wall-clock from one iteration line to the next (logging
included; evaluation iterations excluded on both sides), tokens/s, in-run val loss at each eval, val loss of
the final model on the whole validation split, wall time and peak RSS (wait4 of the process).
Then `lm/shakespeare_char_fast`: wall time until its val loss first reaches nanoGPT's final val
loss. Precision: genforge's train.dtype=auto (bf16 autocast only on a CPU with native bf16,
genforge.cpu.isa); nanoGPT's train.py runs CPU in float32 whatever the CPU. The first line names
the ISA and both sides' dtype; GENFORGE_CPU_ISA=avx2 with ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 measures an AVX2 CPU on a newer one (both sides' processes inherit them).
The last line is
    ratio_tok_s=... val_ours=... val_ref=... rss_ours_mb=... rss_ref_mb=...
"""
from __future__ import annotations

import argparse
import itertools
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
NANO_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
             "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
             "--n_embd=128", "--dropout=0.0"]
TOKENS_PER_ITER = 12 * 64


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nanogpt", required=True, help="a checkout of karpathy/nanoGPT")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/tinyshakespeare/input.txt"))
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=1, help="A B pairs to run (medians over them)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--skip-fast", action="store_true", help="skip the time-to-loss run of the fast config")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gf-bench-"))
    try:
        run_all(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_all(args, work: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from genforge.cpu import isa
    from genforge.device import resolve_dtype

    print(f"{isa.describe()}; dtype: genforge {resolve_dtype('auto', torch.device('cpu'))} (train.dtype=auto), "
          "nanoGPT torch.float32 (its train.py: CPU without autocast)", flush=True)
    text = Path(args.data).read_text()
    nano = setup_nanogpt(Path(args.nanogpt), work, text)
    subprocess.run([sys.executable, "-m", "genforge.cli", "prepare", args.data, "--tokenizer", "char",
                    "--out", str(work / "gf-data")], check=True, stdout=subprocess.DEVNULL)
    # unbuffered output: the line timestamps give a second, wall-clock ms/iter (logging included)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    refs, ours = [], []
    for r in range(args.repeats):
        out = work / f"nano-out-{r}"
        refs.append(run(nano_cmd(args.iters, out), nano, env, parse_nano))
        refs[-1]["val_full"] = eval_nanogpt(nano, out, text)
        print(summary("nanoGPT ", refs[-1]), flush=True)
        gf_out = work / f"gf-out-{r}"
        ours.append(run(gf_cmd("lm/shakespeare_char", work, gf_out, args.iters, args.threads), ROOT, env, parse_ours))
        ours[-1]["val_full"] = eval_genforge(gf_out, text)
        print(summary("genforge", ours[-1]), flush=True)
    med = lambda runs, k: statistics.median(r[k] for r in runs)  # noqa: E731
    for name, runs in (("nanoGPT", refs), ("genforge", ours)):
        print(f"{name:9s} val loss by eval step: " + ", ".join(f"{s}:{v:.4f}" for s, v in runs[0]["evals"]))
    val_ref = med(refs, "val_full")
    if not args.skip_fast:
        fast = run(gf_cmd("lm/shakespeare_char_fast", work, work / "gf-fast", None, args.threads),
                   ROOT, env, parse_ours)
        target = med(refs, "val_last")
        hit = next((t for (s, v), t in zip(fast["evals"], fast["eval_times"]) if v <= target), None)
        ref_time = med(refs, "wall_s")
        print(f"fast config: reached val {target:.4f} after {hit if hit is None else round(hit, 1)} s; nanoGPT's "
              f"whole run took {ref_time:.1f} s; final val {fast['evals'][-1][1]:.4f}; full-split val "
              f"{eval_genforge(work / 'gf-fast', text):.4f}")
        print(f"ratio_time_to_loss={'nan' if hit is None else f'{hit / ref_time:.3f}'} target_val={target:.4f}")
    print("tokens/s ratio per A B pair (nanoGPT's step time moves the most between runs): "
          + ", ".join(f"{o['tok_s'] / r['tok_s']:.3f}" for o, r in zip(ours, refs)))
    print(f"wall-clock ms/iter, line to line (logging included): ours {med(ours, 'line_ms'):.1f}, nanoGPT "
          f"{med(refs, 'line_ms'):.1f}: ratio {med(refs, 'line_ms') / med(ours, 'line_ms'):.3f}")
    print(f"ratio_tok_s={med(ours, 'tok_s') / med(refs, 'tok_s'):.3f} val_ours={med(ours, 'val_full'):.4f} "
          f"val_ref={val_ref:.4f} rss_ours_mb={med(ours, 'rss_mb'):.0f} rss_ref_mb={med(refs, 'rss_mb'):.0f}")


def setup_nanogpt(src: Path, work: Path, text: str) -> Path:
    """Copy nanoGPT's code and write its shakespeare_char data as its prepare.py would."""
    dst = work / "nanogpt"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git", "assets", "*.ipynb"))
    d = dst / "data" / "shakespeare_char"
    d.mkdir(parents=True, exist_ok=True)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    n = len(text)
    np.array([stoi[c] for c in text[: int(n * 0.9)]], dtype=np.uint16).tofile(d / "train.bin")
    np.array([stoi[c] for c in text[int(n * 0.9):]], dtype=np.uint16).tofile(d / "val.bin")
    with open(d / "meta.pkl", "wb") as f:  # nanoGPT's own format, read by its sample.py
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)
    return dst


def nano_cmd(iters: int, out: Path) -> list[str]:
    return [sys.executable, "train.py", *NANO_ARGS, f"--max_iters={iters}", f"--lr_decay_iters={iters}", f"--out_dir={out}"]


def gf_cmd(config: str, work: Path, out: Path, iters: int | None, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "genforge.cli", "train", config, f"data.path={work / 'gf-data'}",
           f"train.out_dir={out}", "train.log_interval=1", f"train.threads={threads}", "--no-progress"]
    return cmd + ([f"train.max_iters={iters}"] if iters else [])


def run(cmd: list[str], cwd: Path, env: dict, parse) -> dict:
    """Run cmd, timestamp each output line, return parse(lines) + wall time and peak RSS."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [(time.monotonic() - t0, line) for line in proc.stdout]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    if status != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed:\n" + "".join(text for _, text in lines[-20:]))
    result = parse(lines)
    result.update(wall_s=wall, rss_mb=usage.ru_maxrss / 1024)
    result["tok_s"] = TOKENS_PER_ITER / (statistics.median(result["ms"]) / 1000)
    result["val_last"] = result["evals"][-1][1]
    result["line_ms"] = statistics.median(line_gaps(result.pop("iter_times")))
    return result


def line_gaps(iter_times: list[tuple[int, float]]) -> list[float]:
    """ms between consecutive iteration lines (everything a step costs, logging too), leaving out
    the warm-up and the gaps that contain an evaluation."""
    return [1000 * (t1 - t0) for (s0, t0), (s1, t1) in itertools.pairwise(iter_times)
            if s1 == s0 + 1 and s0 >= 10 and s1 % 250]


def parse_nano(lines) -> dict:
    ms, evals, times, iters = [], [], [], []
    for t, line in lines:
        if m := re.match(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", line):
            iters.append((int(m[1]), t))
            if int(m[1]) >= 10 and int(m[1]) % 250:  # skip warm-up and evaluation iterations
                ms.append(float(m[2]))
        elif m := re.match(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)", line):
            evals.append((int(m[1]), float(m[2])))
            times.append(t)
    return {"ms": ms, "evals": evals[1:], "eval_times": times[1:], "iter_times": iters}  # nanoGPT also evaluates at step 0


def parse_ours(lines) -> dict:
    ms, evals, times, iters = [], [], [], []
    for t, line in lines:
        if m := re.match(r"step (\d+): loss [\d.e+-]+ lr [\d.e+-]+ tok_s ([\d.e+]+)", line):
            iters.append((int(m[1]), t))
            if int(m[1]) >= 10:
                ms.append(TOKENS_PER_ITER / float(m[2]) * 1000)
        elif m := re.match(r"step (\d+): val_loss ([\d.]+)", line):
            evals.append((int(m[1]), float(m[2])))
            times.append(t)
    return {"ms": ms, "evals": evals, "eval_times": times, "iter_times": iters}


def summary(name: str, r: dict) -> str:
    return (f"{name}: {statistics.median(r['ms']):6.1f} ms/iter ({r['line_ms']:.1f} line to line)  {r['tok_s']:8.0f} tok/s  val@{r['evals'][-1][0]} "
            f"{r['val_last']:.4f}  full-val {r['val_full']:.4f}  wall {r['wall_s']:6.1f} s  peak RSS {r['rss_mb']:.0f} MB")


def val_windows(ids: np.ndarray, T: int = 64) -> torch.Tensor:
    n = (len(ids) - 1) // T
    return torch.from_numpy(np.stack([ids[i * T:i * T + T + 1] for i in range(n)]).astype(np.int64))


def full_val_loss(forward, windows: torch.Tensor) -> float:
    total = 0.0
    with torch.no_grad():
        for b in windows.split(64):
            logits = forward(b[:, :-1].contiguous())
            total += F.cross_entropy(logits.flatten(0, 1).float(), b[:, 1:].flatten(), reduction="sum").item()
    return total / (windows.size(0) * (windows.size(1) - 1))


def eval_nanogpt(nano: Path, out: Path, text: str) -> float:
    """nanoGPT's best checkpoint (it keeps the one with the lowest in-run val loss) on the whole val split."""
    sys.path.insert(0, str(nano))
    from model import GPT, GPTConfig  # nanoGPT's model.py

    sys.path.pop(0)
    ckpt = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=True)  # written by the run just made
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
    model.eval()
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    ids = np.array([stoi[c] for c in text[int(len(text) * 0.9):]])
    # nanoGPT's forward returns only the last position's logits without targets: pass dummy targets
    return full_val_loss(lambda x: model(x, x)[0], val_windows(ids))


def eval_genforge(out: Path, text: str) -> float:
    import genforge

    lm = genforge.load(out, device="cpu", dtype="float32")
    ids = np.array(lm.tokenizer.encode(text[int(len(text) * 0.9):]))
    return full_val_loss(lambda x: lm.model(x)[0], val_windows(ids))


if __name__ == "__main__":
    main()
