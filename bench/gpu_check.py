"""A short check of genforge's CUDA paths on one NVIDIA GPU, with nanoGPT side by side.

    python bench/gpu_check.py --data input.txt [--mnist DIR] [--nanogpt PATH] [--iters 300]

CI has no GPU, so this is run by hand where one is lent. Each check runs in its own process and
prints one line, `PASS|FAIL name seconds: what it measured`; the last line counts them.
  lm-eager, lm-compile   lm/shakespeare_char_gpu (nanoGPT's GPU recipe: 6 layers,
                         6 heads, 384 wide, block 256, batch 64, dropout 0.2) in bf16, eager and
                         compiled; tokens/s over iterations 50..N (output-line timestamps, taken
                         where both sides read the loss back, so GPU queues are counted)
  nano-eager, nano-compile  nanoGPT's own train.py on the same recipe and data, for the ratios
  fp16                   float16 autocast with a GradScaler; the loss falls
  resume                 20 steps == 10 + resume + 10 (max |difference| of the weights)
  generate               KV-cached greedy == uncached greedy (fp32, bf16); tokens/s at batch 1
  ddp, fsdp, fsdp-resume torchrun (nccl) with DDP and with FSDP2; an FSDP checkpoint resumes
                         in a plain process
  vae, gan, images       MNIST image families in bf16, then sample grids and a GIF
  t2i-dit, t2i-dit-compile, t2i-dalle  text to image on the embedded scenes in bf16 (the DiT eager
                         and compiled; the DALL-E-style GPT after its VQ-VAE), then a grid from a prompt
  music, tts, vocoder    the audio families on embedded data (music21's chorales, the espeak-ng
                         teacher) in bf16, then a piece (.mid/.wav/.png), a spoken WAV and a
                         WAV reconstructed through the vocoder
  eval                   `genforge eval` on the GPU
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]  # lm_vs_nanogpt; genforge for the in-process checks
from lm_vs_nanogpt import setup_nanogpt

GF = [sys.executable, "-m", "genforge.cli"]
DEVICE = "cuda"
RESULTS: list[tuple[str, bool, float, str]] = []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="tiny-shakespeare input.txt")
    ap.add_argument("--mnist", help="a folder of MNIST's IDX files (image checks are skipped without it)")
    ap.add_argument("--nanogpt", help="a checkout of karpathy/nanoGPT (its runs are skipped without it)")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--image-iters", type=int, default=400)
    ap.add_argument("--first", type=int, default=50, help="tokens/s counts from this iteration (after compile)")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself")
    ap.add_argument("--skip-lm", action="store_true", help="skip the recipe runs (lm-*, nano-*)")
    ap.add_argument("--lm-overrides", nargs="*", default=[], help="for a dry run, e.g. model.n_layer=2 data.batch_size=4")
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu-check-out"), help="where PNG/GIF/JSON go")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gf-gpu-"))
    try:
        run_checks(args, work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (out / "gpu_check.json").write_text(json.dumps([dict(zip(("name", "ok", "s", "info"), r)) for r in RESULTS], indent=1))
    print(f"gpu_check: {sum(r[1] for r in RESULTS)} passed, {sum(not r[1] for r in RESULTS)} failed")


def run_checks(args, work: Path, out: Path) -> None:
    import torch

    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda":
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, bf16 {torch.cuda.is_bf16_supported()}", flush=True)
    data = work / "char"
    sh(GF + ["prepare", args.data, "--tokenizer", "char", "--out", str(data)])
    lm = None if args.skip_lm else lm_runs(args, work, data)
    check("fp16", lambda: fp16(work, data))
    check("resume", lambda: resume(work, data))
    lm = lm or work / "straight"  # resume's run when the recipe runs were skipped
    check("generate", lambda: generate(lm))
    check("eval", lambda: eval_line(lm))
    check("ddp", lambda: torchrun(work, data, "ddp", []))
    check("fsdp", lambda: torchrun(work, data, "fsdp", ["train.fsdp=true"]))
    check("fsdp-resume", lambda: fsdp_resume(work, data))
    for name, recipe, extra in T2I:  # embedded data: no --mnist needed
        check(name, lambda name=name, recipe=recipe, extra=extra: t2i_run(work, out, name, recipe, args.image_iters, extra))
    check("music", lambda: audio_run(work, out, "music", args.image_iters))
    check("vocoder", lambda: audio_run(work, out, "vocoder", args.image_iters))
    check("tts", lambda: audio_run(work, out, "tts", args.image_iters))  # after the vocoder: it speaks through it
    if args.mnist:
        check("vae", lambda: image_run(work, "vae", args.mnist, args.image_iters))
        check("gan", lambda: image_run(work, "gan", args.mnist, args.image_iters))
        check("images", lambda: image_outputs(work, out))


def check(name: str, fn) -> object:
    t0 = time.monotonic()
    try:
        info, ok = fn(), True
    except Exception as e:  # a check's failure is its result; the others still run
        info, ok = f"{type(e).__name__}: {str(e)[-1500:]}", False
    s = time.monotonic() - t0
    text = info[-2][1].strip() if ok and isinstance(info, list) else str(info)  # a run's output: its last log line
    RESULTS.append((name, ok, round(s, 1), text))
    print(f"{'PASS' if ok else 'FAIL'} {name} {s:.0f}s: {text}", flush=True)
    return info if ok else None


def sh(cmd: list[str], cwd: Path = ROOT, timeout: float = 300) -> list[tuple[float, str]]:
    """Run cmd; (seconds since start, line) for each output line; raise with its tail on failure."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [(time.monotonic() - t0, line) for line in proc.stdout]
    if proc.wait(timeout) != 0:
        raise RuntimeError(f"{' '.join(cmd[2:5])} exited {proc.returncode}: " + "".join(x for _, x in lines[-15:]))
    return lines


def rate(lines, pattern: str, first: int, tokens_per_iter: int) -> float:
    """tokens/s between the log lines of iterations `first` and the last one."""
    stamps = {int(m[1]): t for t, line in lines if (m := re.match(pattern, line))}
    last = max(stamps)
    return tokens_per_iter * (last - first) / (stamps[last] - stamps[first])


def lm_runs(args, work: Path, data: Path) -> Path | None:
    tokens = 64 * 256
    ours = r"step (\d+): loss"
    common = [*args.lm_overrides, f"data.path={data}", f"train.max_iters={args.iters}", f"train.device={DEVICE}", "train.eval_interval=100000", "train.log_interval=10",
              "--no-progress"]
    rates = {}
    for mode in ("eager", "compile"):
        run = work / f"lm-{mode}"
        lines = check(f"lm-{mode}", lambda run=run, mode=mode: sh(GF + ["train", "lm/shakespeare_char_gpu",
                      f"train.out_dir={run}", f"train.compile={mode == 'compile'}", *common]))
        if lines:
            rates[f"ours_{mode}"] = rate(lines, ours, args.first, tokens)
            loss = [line for _, line in lines if line.startswith("step")][-1].strip()
            print(f"  {mode}: {rates[f'ours_{mode}']:.0f} tok/s; {loss}", flush=True)
    if args.nanogpt:
        nano = setup_nanogpt(Path(args.nanogpt), work, Path(args.data).read_text())
        for mode in ("eager", "compile"):
            cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", f"--max_iters={args.iters}",
                   f"--lr_decay_iters={args.iters}", "--eval_interval=100000", "--eval_iters=20", "--log_interval=10",
                   f"--compile={mode == 'compile'}", f"--out_dir={work / 'nano-out'}", f"--device={DEVICE}",
                   *(f"--{o.split('.', 1)[1]}" for o in args.lm_overrides)]
            lines = check(f"nano-{mode}", lambda cmd=cmd: sh(cmd, cwd=nano))
            if lines:
                rates[f"nano_{mode}"] = rate(lines, r"iter (\d+): loss", args.first, tokens)
    for mode in ("eager", "compile"):
        if f"ours_{mode}" in rates and f"nano_{mode}" in rates:
            print(f"ratio_tok_s_{mode}={rates[f'ours_{mode}'] / rates[f'nano_{mode}']:.3f} "
                  f"ours={rates[f'ours_{mode}']:.0f} nanogpt={rates[f'nano_{mode}']:.0f}", flush=True)
    RESULTS.append(("rates", bool(rates), 0.0, json.dumps({k: round(v) for k, v in rates.items()})))
    return work / "lm-eager" if (work / "lm-eager" / "latest").exists() else None


def tiny(data: Path, out: Path, iters: int, *extra: str) -> list[str]:
    return ["lm/shakespeare_char", f"data.path={data}", f"train.out_dir={out}", f"train.max_iters={iters}",
            "train.eval_interval=10", "train.eval_iters=2", "train.log_interval=5", f"train.device={DEVICE}", "--no-progress",
            *extra]


def fp16(work: Path, data: Path) -> str:
    lines = sh(GF + ["train", *tiny(data, work / "fp16", 150, "train.dtype=float16")])
    losses = [float(m[1]) for _, line in lines if (m := re.match(r"step \d+: loss ([\d.]+)", line))]
    assert losses[-1] < losses[0] - 0.5, f"loss did not fall: {losses[0]:.3f} -> {losses[-1]:.3f}"
    return f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def resume(work: Path, data: Path) -> str:
    from safetensors.torch import load_file

    sh(GF + ["train", *tiny(data, work / "straight", 20)])
    sh(GF + ["train", *tiny(data, work / "split", 10)])
    sh(GF + ["train", *tiny(data, work / "split", 20), "--resume"])
    a, b = (load_file(work / d / "latest" / "model.safetensors") for d in ("straight", "split"))
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    exact = all(a[k].equal(b[k]) for k in a)
    assert diff < 1e-4, f"max |diff| {diff:.2e}"
    return f"bitwise equal {exact}, max |diff| {diff:.2e}"


def generate(run: Path) -> str:
    import torch

    import genforge
    from genforge.sample.text import generate_ids

    notes = []
    for dtype in ("float32", "bfloat16"):
        lm = genforge.load(run, device=DEVICE, dtype=dtype)
        idx = torch.tensor([lm.tokenizer.encode("ROMEO:\n")], device=DEVICE)
        n_new = min(100, lm.model.config.block_size - idx.size(1))  # uncached: the context must fit the block
        cached = generate_ids(lm.model, idx, n_new, temperature=0.0)[0]
        ctx = idx
        with torch.inference_mode():
            for _ in range(n_new):  # no cache: the whole context each step
                ctx = torch.cat([ctx, lm.model(ctx)[0][:, -1].float().argmax(-1, keepdim=True)], dim=1)
        same = (ctx[0, idx.size(1):] == cached).float().mean().item()
        t0 = time.perf_counter()
        n = generate_ids(lm.model, idx, 500, temperature=0.8).size(1)  # stacking the ids syncs
        notes.append(f"{dtype}: cached==uncached on {same:.0%} of {n_new} greedy tokens, {n / (time.perf_counter() - t0):.0f} tok/s")
        if dtype == "float32":
            assert same == 1.0, notes[-1]
    return "; ".join(notes)


def eval_line(run: Path) -> str:
    return sh(GF + ["eval", str(run), "--device", DEVICE, "--json"])[-1][1].strip()


def torchrun(work: Path, data: Path, name: str, extra: list[str]) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "genforge.cli",
           "train", *tiny(data, work / name, 30, *extra)]
    lines = sh(cmd)
    return [line for _, line in lines if line.startswith("step")][-1].strip()


def fsdp_resume(work: Path, data: Path) -> str:
    lines = sh(GF + ["train", *tiny(data, work / "fsdp", 40), "--resume"])
    steps = [int(m[1]) for _, line in lines if (m := re.match(r"step (\d+): loss", line))]
    assert steps and steps[0] == 35 and steps[-1] == 40, steps
    return f"resumed at 30, logged {steps}"


def image_run(work: Path, family: str, mnist: str, iters: int) -> str:
    lines = sh(GF + ["train", f"{family}/mnist", f"data.source={mnist}", f"train.out_dir={work / family}",
                     f"train.device={DEVICE}", f"train.max_iters={iters}", f"train.eval_interval={iters // 2}",
                     f"train.log_interval={max(1, iters // 4)}", "--no-progress"])
    return " | ".join(line.strip() for _, line in lines if line.startswith("step"))[-600:]


# text to image on the procedural scenes: the DiT in bf16 eager and compiled, and the DALL-E-style GPT
# over its VQ-VAE's codes (the tokenizer trains first, in the same check)
T2I = [("t2i-dit", "t2i/scenes_dit", []), ("t2i-dit-compile", "t2i/scenes_dit", ["train.compile=true"]),
       ("t2i-dalle", "t2i/scenes_dalle", [])]


def t2i_run(work: Path, out: Path, name: str, recipe: str, iters: int, extra: list[str]) -> str:
    """Train recipe for iters steps on DEVICE into work/name, then generate a grid from a prompt: its log's speeds."""
    run = work / name
    if recipe == "t2i/scenes_dalle":
        sh(GF + ["train", "vqvae/scenes", f"train.out_dir={work / 'vqvae'}", f"train.device={DEVICE}",
                 f"train.max_iters={iters}", f"train.eval_interval={iters}", "--no-progress"])
        extra = [*extra, f"model.vqvae={work / 'vqvae'}"]
    lines = sh(GF + ["train", recipe, f"train.out_dir={run}", f"train.device={DEVICE}", f"train.max_iters={iters}",
                     f"train.eval_interval={iters // 2}", f"train.log_interval={max(1, iters // 4)}", *extra,
                     "--no-progress"], timeout=900)
    sh(GF + ["generate", str(run), "--prompt", "a red circle above a blue square", "--num-samples", "16",
             "--seed", "0", "--device", DEVICE, "--out", str(out / f"{run.name}_gpu.png")])
    return " | ".join(line.strip() for _, line in lines if line.startswith("step"))[-600:]


AUDIO = {"music": "music/chorales", "tts": "tts/espeak", "vocoder": "vocoder/espeak"}


def audio_run(work: Path, out: Path, name: str, iters: int) -> str:
    """Train an audio family's recipe for iters steps on DEVICE into work/name, then make sound
    with it into out: its log's speeds."""
    run = work / name
    extra = [f"model.vocoder={work / 'vocoder'}"] if name == "tts" and (work / "vocoder" / "latest").exists() else []
    lines = sh(GF + ["train", AUDIO[name], f"train.out_dir={run}", f"train.device={DEVICE}", f"train.max_iters={iters}",
                     f"train.eval_interval={iters // 2}", f"train.log_interval={max(1, iters // 4)}",
                     "train.max_minutes=10", *extra, "--no-progress"], timeout=900)
    if name == "music":
        sh(GF + ["generate", str(run), "--num-samples", "1", "--seed", "0", "--device", DEVICE,
                 "--out", str(out / "music_gpu") + "/"])
    elif name == "tts":
        sh(GF + ["speak", str(run), "--text", "A GPU trained this voice.", "--device", DEVICE,
                 "--out", str(out / "tts_gpu.wav")])
    else:
        sh(GF + ["vocode", str(run), "--wav", str(write_tone(work / "tone.wav")), "--device", DEVICE,
                 "--out", str(out / "vocoder_gpu.wav")])
    return " | ".join(line.strip() for _, line in lines if line.startswith("step"))[-600:]


def write_tone(path: Path) -> Path:
    """A 1-second 220 Hz tone at the vocoder recipe's rate (22.05 kHz), for its reconstruction."""
    import numpy as np

    from genforge.data.audio import write_audio

    t = np.arange(22050) / 22050
    return write_audio(path, 0.3 * np.sin(2 * np.pi * 220 * t), 22050)


def image_outputs(work: Path, out: Path) -> str:
    sh(GF + ["generate", str(work / "gan"), "--num-samples", "64", "--out", str(out / "gan_gpu.png"), "--class", "7"])
    sh(GF + ["generate", str(work / "vae"), "--num-samples", "64", "--out", str(out / "vae_gpu.png")])
    sh(GF + ["interpolate", str(work / "vae"), "--out", str(out / "vae_gpu.gif"), "--device", DEVICE])
    return ", ".join(sorted(p.name for p in out.iterdir()))


if __name__ == "__main__":
    main()
