"""tiktoken (genforge/data/fast_bpe.py) vs `tokenizers` on the same tokenizer.json: identical ids? how fast?

    python bench/bpe_engines.py [--vocab 300,1024,8192,30000] [--all-code-points]

For each vocabulary size a byte-level BPE is trained with genforge.data.tokenizer.train_tokenizer
on the first 5 MB of the prepare benchmarks' corpus (bench/_corpus.py: Tiny Shakespeare
paragraphs), then both engines encode: Shakespeare lines and paragraphs, benchmark documents,
shuffled and mangled words, random Unicode, random ASCII, Python source (the standard library's),
text with end-of-text tokens, long single words; with --all-code-points also every Unicode code
point after a letter, a digit, a space, a tab and itself (what the regexes' Unicode classes
decide; ~2 minutes). Prints per set the texts whose ids differ and each engine's seconds (one
process, one thread, alternating is not needed: both run on the same texts back to back).
Last line: `mismatched_texts=... texts=... speedup=...` (tokenizers seconds / tiktoken seconds).
"""
from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import SHAKESPEARE, documents, first_bytes

from genforge.data.tokenizer import EOT, train_tokenizer

SAMPLE_BYTES = 5_000_000
os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread for both engines


def text_sets(all_code_points: bool) -> dict[str, list[str]]:
    rng = random.Random(0)
    shakespeare = SHAKESPEARE.read_text(encoding="utf-8") if SHAKESPEARE.is_file() else "\n\n".join(
        itertools.islice(documents(), 200))
    words = shakespeare.split()
    cps = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    stdlib = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:60]
    sets = {
        "shakespeare lines": shakespeare.split("\n"),
        "shakespeare paragraphs": shakespeare.split("\n\n"),
        "benchmark documents": list(itertools.islice(documents(), 2000)),
        "shuffled words": [" ".join(rng.choice(words) for _ in range(50)) for _ in range(3000)],
        "mangled words": ["".join(rng.choice(words)[rng.randint(0, 3):] + rng.choice(["", " ", "  ", "'s", "\n"])
                                  for _ in range(40)) for _ in range(3000)],
        "random unicode": ["".join(chr(rng.choice(cps)) for _ in range(rng.randint(1, 200))) for _ in range(3000)],
        "random ascii": ["".join(chr(rng.choice([*range(32, 127), 9, 10, 13])) for _ in range(rng.randint(1, 300)))
                         for _ in range(3000)],
        "python source": [p.read_text(encoding="utf-8", errors="replace") for p in stdlib],
        "end-of-text": [f"a{EOT}b", EOT, f" {EOT} x", f"x{EOT}{EOT}\n\n y", "<|endoftext", "", " ", "\n\n"],
        "long words": ["".join(c for c in "".join(rng.choice(words) for _ in range(rng.randint(100, 2000)))
                               if c.isalpha()) for _ in range(200)],
    }
    if all_code_points:
        chars = [chr(c) for c in cps]
        sets["all code points"] = ["".join(f"a{c}1{c} {c}\t{c}{c}x'{c} " for c in chars[i:i + 500])
                                   for i in range(0, len(chars), 500)]
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", default="300,1024,8192,30000", help="comma-separated BPE vocabulary sizes")
    ap.add_argument("--all-code-points", action="store_true", help="also every Unicode code point (slow)")
    args = ap.parse_args()
    sets = text_sets(args.all_code_points)
    bad = total = 0
    seconds = {"tokenizers": 0.0, "tiktoken": 0.0}
    for vocab in map(int, args.vocab.split(",")):
        tok = train_tokenizer(f"bpe:{vocab}", first_bytes(SAMPLE_BYTES))
        t = time.perf_counter()
        fast = tok.fast
        if fast is None:
            sys.exit(f"bpe:{vocab}: the tiktoken engine refused the tokenizer")
        kept = len(fast.encoding._mergeable_ranks) - 256
        print(f"bpe:{vocab}: engine built in {time.perf_counter() - t:.2f} s, {kept} merged tokens kept")
        for name, texts in sets.items():
            t0 = time.perf_counter()
            ref = [e.ids for e in tok.tok.encode_batch(texts, add_special_tokens=False)]
            t1 = time.perf_counter()
            ours = [fast.encode(text) for text in texts]
            t2 = time.perf_counter()
            n = sum(ids != o.tolist() for ids, o in zip(ref, ours))
            bad, total = bad + n, total + len(texts)
            seconds["tokenizers"] += t1 - t0
            seconds["tiktoken"] += t2 - t1
            print(f"  {name:24s} {len(texts):6d} texts {sum(map(len, ref)):11,d} tokens  mismatched {n}  "
                  f"tokenizers {t1 - t0:6.2f} s  tiktoken {t2 - t1:6.2f} s")
    print(f"mismatched_texts={bad} texts={total} speedup={seconds['tokenizers'] / seconds['tiktoken']:.2f}")


if __name__ == "__main__":
    main()
