"""genforge generation vs `transformers` generate: tokens/s on the same weights, batch 1, greedy.

    python bench/generate_vs_hf.py [--quick] [--threads 1] [--repeats 5]

Two random-init GPT-2 models (nothing is downloaded), converted to GPT2LMHeadModel with
genforge.models.gpt_hf.to_hf:
  tiny:  4 layers, 128 wide, 4 heads, vocab 65, block 544; 500 new tokens
  small: GPT-2 124M (12 layers, 768 wide, 12 heads, vocab 50257, block 1024); 200 new tokens
Both sides decode greedily with a KV cache after the same 16-token prompt; a timed run is one whole
generate call (prefill included) and tok/s = new tokens / its wall time. HF runs in fp32. Ours runs
as the GPT is ("fp32"), and as copies made by genforge.cpu.decode.for_decoding, whose
linear layers hold their weights in the layout fastest for one row, in fp32 ("fp32-dec") or bf16
("bf16-dec"; residual stream, KV cache and attention stay fp32; only on a CPU with native bf16,
genforge.cpu.isa: elsewhere it would time emulated bf16). The first line names the ISA. Making a copy takes well under a
second; it is printed apart and not counted in tok/s. Runs alternate HF, ours, ... in this process;
each number is the median over the repeats. A size's ratio takes ours' fastest variant. The last line is
    ratio_tiny=... ratio_small=...
(genforge tok/s / HF tok/s). One thread by default: on a shared machine a second OpenMP thread
that gets descheduled stalls every parallel op, which swamps both sides.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from genforge.cpu import isa
from genforge.cpu.decode import for_decoding
from genforge.models.gpt import GPT, GPTConfig
from genforge.models.gpt_hf import to_hf
from genforge.sample.text import generate_ids

# name: (GPTConfig fields, new tokens, new tokens with --quick, timed runs per side)
SIZES = {
    "tiny": ({"vocab_size": 65, "block_size": 544, "n_layer": 4, "n_head": 4, "n_embd": 128}, 500, 200, 5),
    "small": ({"vocab_size": 50257, "block_size": 1024, "n_layer": 12, "n_head": 12, "n_embd": 768}, 200, 50, 3),
}
PROMPT_LEN = 16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer new tokens (tiny 200, small 50)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, the same for both sides")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per side (default: tiny 5, small 3)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, transformers {transformers_version()}, threads={args.threads}, {isa.describe()}; "
          f"dtype: HF torch.float32, genforge {', '.join(str(d) for _, d in decode_copies())} copies beside its fp32 model")
    ratios = {}
    for name, (cfg, new_tokens, quick_tokens, repeats) in SIZES.items():
        ratios[name] = bench_size(name, cfg, quick_tokens if args.quick else new_tokens, args.repeats or repeats)
    print(f"ratio_tiny={ratios['tiny']:.2f} ratio_small={ratios['small']:.2f}")


def decode_copies() -> list[tuple[str, torch.dtype]]:
    """ours' for_decoding copies: fp32, and bf16 where the CPU has it natively."""
    return [("fp32-dec", torch.float32)] + ([("bf16-dec", torch.bfloat16)] if isa.native_bf16() else [])


def bench_size(name: str, cfg: dict, new_tokens: int, repeats: int) -> float:
    torch.manual_seed(0)
    ours = GPT(GPTConfig(**cfg)).eval()
    hf = hf_model(ours)
    prompt = torch.randint(0, cfg["vocab_size"], (1, PROMPT_LEN), generator=torch.Generator().manual_seed(1))
    models = {"fp32": ours}
    for label, dtype in decode_copies():
        start = time.perf_counter()
        models[label] = for_decoding(ours, dtype)
        print(f"[{name}] for_decoding({dtype}) took {time.perf_counter() - start:.2f} s (once per model; not in tok/s)")
    runs = {"hf fp32": lambda: hf_generate(hf, prompt, new_tokens)}
    for label, model in models.items():
        runs[f"ours {label}"] = lambda model=model: generate_ids(model, prompt, new_tokens, temperature=0.0)
    tokens = {side: run() for side, run in runs.items()}  # also warms up
    ref = tokens["hf fp32"]
    for side, got in tokens.items():
        if side != "hf fp32":
            print(f"[{name}] {side}: greedy tokens equal HF's for the first {agreeing(got, ref)}/{new_tokens}")
    seconds: dict[str, list[float]] = {side: [] for side in runs}
    for _ in range(repeats):
        for side, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[side].append(time.perf_counter() - start)
    tok_s = {side: new_tokens / statistics.median(s) for side, s in seconds.items()}
    for side, rate in tok_s.items():
        spread = f"{new_tokens / max(seconds[side]):.1f}..{new_tokens / min(seconds[side]):.1f}"
        print(f"[{name}] {side:13s} {rate:8.1f} tok/s  (runs {spread})")
    best = max((s for s in tok_s if s.startswith("ours")), key=tok_s.get)
    ratio = tok_s[best] / tok_s["hf fp32"]
    print(f"[{name}] {new_tokens} new tokens: ours ({best.split()[1]}) / HF (fp32) = {ratio:.2f}x")
    return ratio


def hf_model(model: GPT):
    import transformers

    config, state = to_hf(model)
    kw = {k: v for k, v in config.items() if k not in ("architectures", "model_type")}
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**kw, bos_token_id=None, eos_token_id=None))
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all(k == "lm_head.weight" or k.endswith("attn.bias") for k in missing), missing
    return hf.eval()


def hf_generate(hf, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    # no end-of-text token: both sides make exactly new_tokens tokens
    out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                      min_new_tokens=new_tokens, do_sample=False, use_cache=True, pad_token_id=0,
                      eos_token_id=None)
    return out[:, prompt.size(1):]


def agreeing(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading tokens a and b (1, N) share."""
    differ = (a[0] != b[0]).nonzero()
    return int(differ[0]) if len(differ) else a.size(1)


def transformers_version() -> str:
    import transformers

    return transformers.__version__


if __name__ == "__main__":
    main()
