"""Fault injection, as an outside tester would run it: kill training runs, damage checkpoints,
hand the readers traversing manifests and the server bad input.

    python bench/faults.py [--runs 3] [--servers 1] [--seed 0] [--workdir DIR]

- `--runs` times each, a tiny char GPT run (`genforge train` subprocess, a checkpoint every few
  steps) is killed by SIGKILL and, separately, by SIGTERM once it has logged a random number of
  steps (so some kills land inside a save). After each: `latest` must verify and load, a
  `--resume` must continue it and leave no temporary checkpoint behind, and after SIGTERM the
  run must have exited 0 having saved the last step it logged. Then a copy of the checkpoint has
  random bytes of a random weight file flipped: loading it must fail, and `genforge generate` on
  it must fail with a one-line error.
- Traversal: data directories whose manifest names a shard or tokenizer outside them (absolute,
  `../`, a symlink), a checkpoint whose weights are a symlink out and whose sha256.json names a
  file outside, a captioned folder whose metadata.jsonl does: each must be refused, with a
  message that gives away nothing of the canary file outside (its size, its content).
- `--servers` times, a `genforge serve` subprocess gets the bad-input set (broken JSON, invalid
  UTF-8, wrong types, out-of-range values, unknown models, an oversized body, `..` URLs) and
  streams the client drops part-way; every answer must be a 4xx JSON error and the server must
  still answer afterwards.

The last line is

    kills=... lost_steps_sigterm=... corrupt_loads=... traversal_reads=... tracebacks=... bad_answers=...

kills counts the kills made; lost_steps_sigterm the steps a SIGTERM run had logged but not
saved; corrupt_loads the damaged checkpoints that loaded plus the killed runs whose `latest`
did not load or resume; traversal_reads the outside files accepted or disclosed (a manifest, a
checkpoint, metadata, or a `..` URL the server answered); tracebacks the Python tracebacks
printed by any of the processes; bad_answers the server's answers to bad input that were not a
4xx JSON error (or no answer afterwards). All but kills must be 0.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "bold", "wizards", "judge", "my", "sphinx", "of", "black", "quartz"]
CANARY = b"canary: the contents of a file outside every data directory\n"
TINY = ("model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 32}\n"
        "data: {batch_size: 4}\n"
        "train: {warmup_iters: 2, eval_iters: 1, log_interval: 1, device: cpu, dtype: float32, threads: 1,\n"
        "        keep_checkpoints: 2, max_iters: 1000000}\n")


class Tally:
    def __init__(self):
        self.kills = self.lost_steps_sigterm = self.corrupt_loads = self.traversal_reads = self.tracebacks = 0
        self.bad_answers = 0
        self.notes: list[str] = []

    def note(self, what: str) -> None:
        self.notes.append(what)
        print(f"  FAULT: {what}", flush=True)

    def scan(self, text: str, what: str) -> None:
        n = text.count("Traceback (most recent call last)")
        if n:
            self.tracebacks += n
            self.note(f"{what}: traceback\n{text[-1500:]}")

    def line(self) -> str:
        return (f"kills={self.kills} lost_steps_sigterm={self.lost_steps_sigterm} corrupt_loads={self.corrupt_loads} "
                f"traversal_reads={self.traversal_reads} tracebacks={self.tracebacks} bad_answers={self.bad_answers}")


def genforge(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "genforge.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def corpus(path: Path, lines: int = 3000, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize() + ".\n"
                            for _ in range(lines)))
    return path


# --- killed runs -----------------------------------------------------------------------------

def kill_run(tally: Tally, work: Path, cfg: Path, data: Path, sig: signal.Signals, rng: random.Random, i: int) -> Path:
    run = work / f"run-{sig.name}-{i}"
    every, at = rng.randint(2, 6), rng.randint(3, 30)
    args = [cfg, f"data.path={data}", f"train.out_dir={run}", f"train.eval_interval={every}", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "genforge.cli", "train", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    logged = []
    for line in proc.stdout:
        if m := re.match(r"step (\d+): loss", line):
            logged.append(int(m.group(1)))
            if logged[-1] >= at:
                break
    time.sleep(rng.random() * 0.05)  # somewhere inside the next steps, or a save
    proc.send_signal(sig)
    tally.kills += 1
    out, err = proc.communicate(timeout=300)
    logged += [int(s) for s in re.findall(r"^step (\d+): loss", out, re.M)]
    tally.scan(err, f"train killed by {sig.name}")
    saved = latest_step(run)
    print(f"{sig.name} at step {logged[-1] if logged else 0}: rc {proc.returncode}, latest step {saved}", flush=True)
    if sig == signal.SIGTERM:
        if proc.returncode != 0 or "stopped by SIGTERM" not in err:
            tally.note(f"{run}: SIGTERM exit {proc.returncode}: {err.strip().splitlines()[-1:]}")
        lost = max(logged or [0]) - (saved or 0)
        if lost:
            tally.note(f"{run}: {lost} steps logged but not saved")
        tally.lost_steps_sigterm += max(lost, 0)
    check_latest(tally, run, args, saved)
    return run


def latest_step(run: Path) -> int | None:
    latest = run / "latest"
    return int(latest.resolve().name.removeprefix("step-")) if latest.exists() else None


def check_latest(tally: Tally, run: Path, args: list, saved: int | None) -> None:
    """latest verifies and loads, and a resume continues it and leaves no temporaries."""
    from genforge import checkpoint as ckpt_io
    from genforge.errors import GenforgeError

    if saved is None:
        return  # killed before the first checkpoint: nothing to lose yet
    try:
        ckpt_io.verify(run)
        ckpt_io.load(run)
    except GenforgeError as e:
        tally.corrupt_loads += 1
        tally.note(f"{run}: latest does not load after the kill: {e}")
        return
    done = genforge("train", *args, f"train.max_iters={saved + 2}", "--resume")
    tally.scan(done.stderr, f"{run}: resume")
    left = [p.name for p in run.glob(".*tmp*")]
    if done.returncode != 0 or latest_step(run) != saved + 2 or left:
        tally.corrupt_loads += 1
        tally.note(f"{run}: resume rc {done.returncode}, latest {latest_step(run)}, temporaries {left}: "
                   f"{done.stderr.strip().splitlines()[-1:]}")


def damage(tally: Tally, run: Path, work: Path, rng: random.Random, i: int) -> None:
    """Flip random bytes of a random weight file of a copy of latest: it must not load."""
    from genforge import checkpoint as ckpt_io
    from genforge.errors import CheckpointError

    if not (run / "latest").exists():
        return
    ckpt = shutil.copytree((run / "latest").resolve(), work / f"damaged-{i}")
    weights = rng.choice(sorted(ckpt.glob("*.safetensors")))
    data = bytearray(weights.read_bytes())
    for at in rng.sample(range(len(data)), rng.choice((1, 8, 64))):
        data[at] ^= 1 << rng.randrange(8)
    weights.write_bytes(bytes(data))
    try:
        ckpt_io.load(ckpt)
        tally.corrupt_loads += 1
        tally.note(f"{weights}: loaded despite flipped bytes")
    except CheckpointError:
        pass
    done = genforge("generate", ckpt, "--max-new-tokens", "4", "--device", "cpu")
    tally.scan(done.stderr, f"generate on {ckpt}")
    if done.returncode != 2 or done.stderr.count("\n") != 1:
        tally.corrupt_loads += 1
        tally.note(f"generate on damaged {ckpt}: rc {done.returncode}: {done.stderr[-500:]}")


# --- traversal -------------------------------------------------------------------------------

def traversal(tally: Tally, work: Path, cfg: Path, data: Path, ckpt: Path) -> None:
    canary = work / "outside" / "canary.txt"
    canary.parent.mkdir(exist_ok=True)
    canary.write_bytes(CANARY)
    shutil.copyfile(data / "tokenizer.json", work / "outside" / "tokenizer.json")
    shard = json.loads((data / "manifest.json").read_text())["splits"]["train"][0]["file"]

    def manifest(name: str, change) -> Path:
        bad = shutil.copytree(data, work / f"traversal-{name}")
        m = json.loads((bad / "manifest.json").read_text())
        change(bad, m)
        (bad / "manifest.json").write_text(json.dumps(m))
        return bad

    def set_shard(value):
        return lambda d, m: m["splits"]["train"][0].update(file=value, tokens=len(CANARY) // 2)

    def symlink_shard(d, m):
        (d / shard).unlink()
        (d / shard).symlink_to(canary)

    cases = {"absolute shard": set_shard(str(canary)), "dotdot shard": set_shard("../outside/canary.txt"),
             "deep dotdot shard": set_shard("../../../../../../../../etc/passwd"),
             "symlinked shard": symlink_shard,
             "absolute tokenizer": lambda d, m: m.update(tokenizer=str(work / "outside" / "tokenizer.json")),
             "dotdot tokenizer": lambda d, m: m.update(tokenizer="../outside/tokenizer.json")}
    for name, change in cases.items():
        bad = manifest(name.replace(" ", "-"), change)
        done = genforge("train", cfg, f"data.path={bad}", f"train.out_dir={work / ('t-' + bad.name)}",
                        "train.max_iters=2", "--no-progress")
        refused(tally, name, done, canary)
    # a checkpoint whose weights point out, or whose sha256.json names a file outside
    out = shutil.copytree(ckpt, work / "ckpt-symlink")
    (out / "model.safetensors").unlink()
    (out / "model.safetensors").symlink_to(ckpt / "model.safetensors")
    refused(tally, "symlinked weights", genforge("generate", out, "--max-new-tokens", "2", "--device", "cpu"), canary)
    from genforge import checkpoint as ckpt_io
    from genforge.errors import GenforgeError

    out = shutil.copytree(ckpt, work / "ckpt-sums")
    sums = json.loads((out / "sha256.json").read_text())
    sums["../outside/canary.txt"] = "0" * 64
    (out / "sha256.json").write_text(json.dumps(sums))
    try:
        ckpt_io.verify(out)
        tally.traversal_reads += 1
        tally.note("sha256.json naming a file outside: accepted")
    except GenforgeError as e:
        disclosed(tally, "sha256.json", str(e), canary)
    # a captioned folder whose metadata.jsonl names an image outside it
    from PIL import Image

    from genforge.data.captions import read_captioned

    folder = work / "captioned"
    folder.mkdir()
    Image.new("L", (4, 4)).save(folder / "a.png")
    Image.new("L", (4, 4), 255).save(work / "outside" / "secret.png")
    rows = [{"file_name": "a.png", "text": "a"}, {"file_name": "../outside/secret.png", "text": "b"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        read_captioned(folder)
        tally.traversal_reads += 1
        tally.note("metadata.jsonl naming an image outside: accepted")
    except GenforgeError as e:
        disclosed(tally, "metadata.jsonl", str(e), canary)


def refused(tally: Tally, what: str, done: subprocess.CompletedProcess, canary: Path) -> None:
    tally.scan(done.stderr, what)
    if done.returncode == 0:
        tally.traversal_reads += 1
        tally.note(f"{what}: accepted (rc 0)")
        return
    disclosed(tally, what, done.stderr, canary)


def disclosed(tally: Tally, what: str, message: str, canary: Path) -> None:
    if f"{len(CANARY)} bytes" in message or CANARY.decode().strip() in message or "bytes, manifest says" in message:
        tally.traversal_reads += 1
        tally.note(f"{what}: the error discloses the file outside: {message.strip()}")


# --- servers ---------------------------------------------------------------------------------

BAD_BODIES = [b"{", b"\xff\xfe\x00", b"[]", b"null", b'"text"', json.dumps({"prompt": "a"}).encode(),
              json.dumps({"model": "nope", "prompt": "a"}).encode()]
BAD_FIELDS = [{"prompt": 123}, {"prompt": ["a", 7]}, {"prompt": [[10 ** 9]]}, {"max_tokens": "many"},
              {"max_tokens": -1}, {"max_tokens": 10 ** 9}, {"temperature": -1}, {"temperature": "hot"},
              {"top_p": 7}, {"n": 10 ** 6}, {"stop": ["x"] * 1000}, {"seed": "s"}, {"stream": [1]},
              {"prompt": "\ud800"}, {"logit_bias": {"x": 1}}]
BAD_PATHS = ["/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
             "/static/..%2f..%2f..%2fetc%2fpasswd", "/v1/models/../../etc/passwd", "/review/../../etc/passwd"]


def server(tally: Tally, ckpt: Path, threads: int = 1) -> None:
    import httpx
    from _serve import start_server

    proc, url = start_server([f"toy={ckpt}", "--max-body-bytes", "100000"], threads)
    try:
        for body in BAD_BODIES:
            answer(tally, f"body {body[:20]!r}", httpx.post(f"{url}/v1/completions", content=body, timeout=30,
                                                             headers={"Content-Type": "application/json"}))
        for fields in BAD_FIELDS:
            body = {"model": "toy", "prompt": "a", "max_tokens": 4, **fields}
            answer(tally, f"fields {str(fields)[:40]}", httpx.post(f"{url}/v1/completions", timeout=30,
                                                                   content=json.dumps(body).encode(),
                                                                   headers={"Content-Type": "application/json"}))
        answer(tally, "oversized body", httpx.post(f"{url}/v1/completions", content=b"x" * 200_000, timeout=30))
        for path in BAD_PATHS:
            r = httpx.get(f"{url}{path}", timeout=30)
            if r.status_code < 400 or "root:" in r.text:
                tally.traversal_reads += 1
                tally.note(f"GET {path}: {r.status_code}")
        for _ in range(3):  # clients that drop a stream part-way
            body = {"model": "toy", "prompt": "the", "max_tokens": 200, "stream": True}
            with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as r:
                for line in r.iter_lines():
                    if line.startswith("data: {"):
                        break
        r = httpx.post(f"{url}/v1/completions", json={"model": "toy", "prompt": "a", "max_tokens": 4}, timeout=60)
        if r.status_code != 200:
            tally.note(f"the server no longer answers: {r.status_code}")
            tally.bad_answers += 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        tally.scan(err.decode(errors="replace"), "server log")


def answer(tally: Tally, what: str, r) -> None:
    try:
        ok = 400 <= r.status_code < 500 and "message" in r.json()["error"]
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        tally.bad_answers += 1
        tally.note(f"server, {what}: {r.status_code} {r.text[:200]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs killed by each of SIGKILL and SIGTERM (default 3)")
    ap.add_argument("--servers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="keep the runs here (default: a temporary directory)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("GENFORGE_CACHE", tempfile.mkdtemp(prefix="genforge-faults-cache-"))
    work = Path(a.workdir or tempfile.mkdtemp(prefix="genforge-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    rng, tally = random.Random(a.seed), Tally()
    data = work / "data"
    done = genforge("prepare", corpus(work / "corpus.txt"), "--out", data)
    tally.scan(done.stderr, "prepare")
    cfg = work / "tiny.yaml"
    cfg.write_text(TINY)
    t0, runs = time.perf_counter(), []
    for i in range(a.runs):
        for sig in (signal.SIGKILL, signal.SIGTERM):
            runs.append(kill_run(tally, work, cfg, data, sig, rng, i))
            damage(tally, runs[-1], work, rng, len(runs))
    ckpt = next(((r / "latest").resolve() for r in runs if (r / "latest").exists()), None)
    if ckpt is not None:
        traversal(tally, work, cfg, data, ckpt)
        for _ in range(a.servers):
            server(tally, ckpt)
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(runs)} runs, {a.servers} servers in {time.perf_counter() - t0:.0f}s; {len(tally.notes)} faults")
    print(tally.line())


if __name__ == "__main__":
    main()
