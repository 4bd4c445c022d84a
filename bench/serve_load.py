"""`genforge serve` under load: requests/s, p50/p99 latency and tokens/s per stream for short
streamed completions at concurrency 1, 4 and 16, against in-process generation of the same requests.

    python bench/serve_load.py [--ckpt CKPT] [--requests 48] [--max-tokens 32] [--rounds 2] [--threads 1]

The server is a real `genforge serve` subprocess (uvicorn) on a free port; clients are httpx async
streams in this process. Without --ckpt the model is a random-init char GPT (4 layers, 128 wide,
4 heads, block 256: the "tiny" size of bench/generate_vs_hf.py), saved as a checkpoint. Each
request streams `max_tokens` tokens after a 4-character prompt (SSE, usage included); latency is
request start to [DONE]; tokens/s per stream is completion tokens / latency (prefill and HTTP included:
under load the server sends every piece generated since the last event in one event, so
first-to-last-event spans would flatter it).
The reference is the same request made in-process (`TextModel.stream`, same thread count); rounds
alternate reference, server c=1, c=4, c=16, and every number is the median over rounds. The last line is
    rps_c1=... rps_c4=... rps_c16=... p50_ms_c1=... p99_ms_c16=... tok_s_stream_c1=... tok_s_stream_c16=... http_vs_inprocess_c1=...
(http_vs_inprocess_c1: server tokens/s per stream at c=1 / in-process tokens/s).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import start_server as serve

PROMPT = "The "
LEVELS = (1, 4, 16)


def tiny_checkpoint(root: Path) -> Path:
    from genforge.checkpoint import save_checkpoint
    from genforge.data.tokenizer import train_tokenizer
    from genforge.models.gpt import GPT, GPTConfig

    tok = train_tokenizer("char", ["".join(map(chr, range(32, 127))) + "\n"])
    tok.save(root / "tokenizer.json")
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=4, n_head=4, n_embd=128)
    config = {"family": "gpt", "model": asdict(cfg), "tokenizer": "tokenizer.json", "step": 0}
    return save_checkpoint(root / "tiny" / "step-0000000", config, {"model": GPT(cfg).eval()}, root / "tokenizer.json")


def start_server(ckpt: Path, threads: int) -> tuple[subprocess.Popen, str]:
    return serve([f"tiny={ckpt}", "--max-concurrent", str(max(LEVELS))], threads)


async def one_stream(client: httpx.AsyncClient, url: str, max_tokens: int, seed: int) -> tuple[float, float]:
    """(latency s, completion tokens/s of this stream)."""
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed,
            "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    tokens = 0
    async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    end = time.perf_counter()
    return end - start, tokens / (end - start)


async def load(url: str, concurrency: int, requests: int, max_tokens: int) -> dict:
    queue = list(range(requests))
    results: list[tuple[float, float]] = []

    async def worker(client):
        while queue:
            results.append(await one_stream(client, url, max_tokens, queue.pop()))

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=concurrency)) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    lat = sorted(r[0] for r in results)
    return {"rps": requests / wall, "p50_ms": 1000 * lat[len(lat) // 2],
            "p99_ms": 1000 * lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))],
            "tok_s_stream": statistics.median(r[1] for r in results)}


def in_process(lm, requests: int, max_tokens: int) -> float:
    """Median completion tokens/s of the same requests generated in this process."""
    rates = []
    for seed in range(requests):
        start = time.perf_counter()
        text = "".join(lm.stream(PROMPT, max_tokens, temperature=0.8, seed=seed))
        rates.append(len(lm.tokenizer.tok.encode(text, add_special_tokens=False).ids) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", help="a text checkpoint (default: a random-init tiny char GPT)")
    ap.add_argument("--requests", type=int, default=48, help="requests per concurrency level and round")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server and the reference")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from genforge.cpu import isa

    print(f"{isa.describe()}; dtype: server and reference torch.float32 (genforge.load's dtype=auto on CPU)", flush=True)
    import genforge

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(args.ckpt) if args.ckpt else tiny_checkpoint(Path(tmp))
        lm = genforge.load(ckpt, device="cpu")
        proc, url = start_server(ckpt, args.threads)
        try:
            asyncio.run(load(url, 1, 4, args.max_tokens))  # warm-up
            ref, runs = [], {c: [] for c in LEVELS}
            for r in range(args.rounds):
                ref.append(in_process(lm, min(args.requests, 16), args.max_tokens))
                for c in LEVELS:
                    runs[c].append(asyncio.run(load(url, c, args.requests, args.max_tokens)))
                    m = runs[c][-1]
                    print(f"round {r} c={c:2d}: {m['rps']:.1f} req/s  p50 {m['p50_ms']:.0f} ms  p99 {m['p99_ms']:.0f} ms"
                          f"  {m['tok_s_stream']:.0f} tok/s per stream")
                print(f"round {r} in-process: {ref[-1]:.0f} tok/s")
        finally:
            proc.terminate()
            proc.wait(30)
    med = {c: {k: statistics.median(m[k] for m in runs[c]) for k in runs[c][0]} for c in LEVELS}
    ref_med = statistics.median(ref)
    for c in LEVELS:
        print(f"c={c:2d}: {med[c]['rps']:.1f} req/s, p50 {med[c]['p50_ms']:.0f} ms, p99 {med[c]['p99_ms']:.0f} ms, "
              f"{med[c]['tok_s_stream']:.0f} tok/s per stream")
    print(f"in-process reference: {ref_med:.0f} tok/s")
    print(f"rps_c1={med[1]['rps']:.1f} rps_c4={med[4]['rps']:.1f} rps_c16={med[16]['rps']:.1f} "
          f"p50_ms_c1={med[1]['p50_ms']:.0f} p99_ms_c16={med[16]['p99_ms']:.0f} "
          f"tok_s_stream_c1={med[1]['tok_s_stream']:.0f} tok_s_stream_c16={med[16]['tok_s_stream']:.0f} "
          f"http_vs_inprocess_c1={med[1]['tok_s_stream'] / ref_med:.2f}")


if __name__ == "__main__":
    main()
