"""The image step of `genforge quickstart`: a convolutional VAE on the embedded digits for a
wall-clock budget, then a sample grid, reconstructions and an interpolation GIF."""
from __future__ import annotations

from pathlib import Path

from genforge.config import load_config

CONFIG = Path(__file__).resolve().parent / "recipes" / "quickstart_vae_digits.yaml"


def quickstart_images(out: str | Path, minutes: float = 1.5) -> Path:
    """Train the quickstart VAE into out/run; write out/samples.png, out/reconstructions.png and
    out/interpolation.gif; return the final checkpoint directory."""
    from genforge.sample.image_verbs import generate_grid, interpolate_to
    from genforge.train.run import run

    out = Path(out)
    cfg = load_config(CONFIG, [f"train.out_dir={out / 'run'}", f"train.max_minutes={minutes}"])
    print(f"genforge quickstart: convolutional VAE on builtin:digits for {minutes:g} min -> {out}", flush=True)
    ckpt = run(cfg)
    grid = generate_grid(ckpt, out / "samples.png", 64)
    recon = generate_grid(ckpt, out / "reconstructions.png", 16, show="reconstructions")
    gif = interpolate_to(ckpt, out / "interpolation.gif", steps=12)
    print(f"\ncheckpoint   {ckpt}\nsamples      {grid}\nrecon        {recon}\ninterpolate  {gif}\n"
          f"try          genforge generate {out / 'run'} --show traversal --out traversal.png")
    return ckpt
