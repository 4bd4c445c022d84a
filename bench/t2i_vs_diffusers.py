"""genforge's text-to-image denoiser vs diffusers' UNet2DConditionModel, side by side in one process.

    python bench/t2i_vs_diffusers.py [--train-minutes 10] [--threads 1] [--repeats 3] [--quick]
                                     [--ref-attn 16,8] [--ref-lr 1e-4] [--eval-prompts 256]
                                     [--sample-steps 50] [--sample-images 64]

Both train on the same captioned data (builtin:scenes, 32x32, the t2i/scenes_dit recipe's 20,000
training scenes, batch 64, the same shuffled order) and read captions through the same text
conditioning: genforge's TextConditioner (models/text_cond.py; the recipe's 2-layer, width-128
word-level tower with a null token) trained from scratch with each denoiser, its states given to
the UNet as `encoder_hidden_states` and its mask as `encoder_attention_mask`. Both drop 10% of the
captions in training (the recipe's cond_dropout) so that classifier-free guidance has an
unconditional model, and both guide at the recipe's scale (3.0) in one batch of 2B per step.

genforge: the t2i/scenes_dit recipe's model (a DiT with patch 4, 6 x 128, adaLN-Zero, cross-
attention; rectified flow, logit-normal times) and training (AdamW 1e-3, warmup and cosine over the
time budget, grad clip 1, EMA 0.999 with warmup) through `genforge train`'s loop; it samples with
its default sampler (Euler for flow).
Reference: diffusers' UNet2DConditionModel sized for 32x32: block_out_channels (32, 64, 64),
layers_per_block 2, cross-attention (4 heads) at the low resolutions (--ref-attn: 16,8 = 16x16 and
8x8, the layout of the issue's measured 28x28 UNet; 8 = 8x8 only, faster), trained as in diffusers'
examples/text_to_image/train_text_to_image.py: epsilon prediction, DDPMScheduler (its defaults, the
DDPM paper's linear betas 1e-4..0.02 over 1000 steps: the pixel-space schedule, since the example's
Stable Diffusion schedule is for latents), t ~ U{0..999}, MSE, torch.optim.AdamW(lr 1e-4,
betas (0.9, 0.999), weight_decay 1e-2, eps 1e-8) with the constant schedule, max_grad_norm 1,
--use_ema (diffusers' EMAModel, its defaults); sampled with DDIMScheduler.from_config(the DDPM
config) as StableDiffusionPipeline does (eta 0).
Precision: training in the dtype genforge's train.dtype=auto picks for this CPU (bf16 autocast
only where bf16 is native, genforge.cpu.isa) on both sides; sampling in float32 on both (what
`genforge generate` does on a CPU).

Measured:
1. training images/s: forward + backward + clip + AdamW steps on the same batches, A B A B
   (--repeats pairs of --steps timed steps each after one warm-up), medians of the step times;
2. the time to sample --sample-images held-out prompts at --sample-steps steps with guidance,
   alternating, medians over --sample-repeats;
3. (skipped with --quick) the held-out GenEval-style accuracy (genforge.eval.geneval, the scene
   judge of genforge.train.judge) each reaches after --train-minutes of this process's CPU time
   of training (time.process_time; genforge's loop with train.budget_clock=cpu), sampled from the
   EMA weights at --sample-steps steps on --eval-prompts held-out prompts (seed 0).
The last line is   ratio_img_s=... ratio_sample=... acc_ours=... acc_ref=...   (speed ratios are
ours / reference: above 1 genforge is faster; accuracies are geneval's overall).
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge.cpu import isa
from genforge.data import caption_batches as captions
from genforge.data import scenes
from genforge.data.image_batches import ImageBatches
from genforge.device import autocast, resolve_dtype
from genforge.models.text_cond import TextConditioner, text_tower_config
from genforge.run_config import load_config

RECIPE = "t2i/scenes_dit"
VOCAB = "shapes"  # builtin:scenes' default vocabulary, the recipe's
# diffusers' train_text_to_image.py defaults
REF_LR, REF_BETAS, REF_WD, REF_EPS, REF_CLIP = 1e-4, (0.9, 0.999), 1e-2, 1e-8, 1.0


class RefT2I(nn.Module):
    """diffusers' UNet2DConditionModel reading the same text tower genforge's DiT reads."""

    def __init__(self, model_cfg, attn: tuple[int, ...]):
        from diffusers import UNet2DConditionModel

        super().__init__()
        c = model_cfg
        size, widths = c.image_size, (32, 64, 64)
        res = [size >> min(i, len(widths) - 1) for i in range(len(widths))]  # the last block does not downsample
        down = tuple("CrossAttnDownBlock2D" if r in attn else "DownBlock2D" for r in res)
        up = tuple("CrossAttnUpBlock2D" if d.startswith("CrossAttn") else "UpBlock2D" for d in reversed(down))
        self.unet = UNet2DConditionModel(sample_size=size, in_channels=c.channels, out_channels=c.channels,
                                         block_out_channels=widths, down_block_types=down, up_block_types=up,
                                         layers_per_block=2, cross_attention_dim=c.text_width, attention_head_dim=4)
        tower = text_tower_config(c.text_vocab, c.text_len, c.text_width, c.text_layers, c.text_heads, c.text_pad)
        self.text = TextConditioner(tower, c.text_width, c.text_pad, frozen=False)
        self.layout = down

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        states, mask = text
        return self.unet(x, t, encoder_hidden_states=states.to(x.dtype), encoder_attention_mask=mask).sample


def params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- data and models --------------------------------------------------------------------------

def open_data(cfg):
    """(train batches without draws, tokenizer, text_len, the filled model config) as run_t2i builds them."""
    from genforge.train.run_t2i import fill

    train_set, val_set = captions.open_captioned(cfg.data)
    tokenizer = captions.caption_tokenizer(cfg.data, train_set.captions + val_set.captions)
    text_len = cfg.data.text_len or captions.longest(tokenizer, train_set.captions + val_set.captions)
    train_ids = captions.encode_captions(tokenizer, train_set.captions, text_len)
    val_ids = captions.encode_captions(tokenizer, val_set.captions, text_len)
    size = cfg.data.image_size or train_set.images.shape[2]
    model_cfg = fill(cfg.model, dict(image_size=size, channels=train_set.images.shape[1], text_vocab=tokenizer.vocab_size,
                                     text_len=text_len, text_pad=captions.pad_id(tokenizer)))
    batches = ImageBatches(captions.as_image_set(train_set, train_ids, size), captions.as_image_set(val_set, val_ids, size),
                           cfg.data.batch_size, cfg.train.seed)
    return batches, tokenizer, text_len, model_cfg


class Ours:
    """genforge's DiT, objective and optimizer as the loop builds them (for the timed steps)."""

    def __init__(self, cfg, model_cfg, seed: int):
        from genforge.families import family, resolve
        from genforge.train.optim import build_optimizer

        torch.manual_seed(seed)
        fam = family(cfg.family)
        self.model = fam.build(model_cfg)
        self.objective = resolve(fam.objective)(self.model)
        self.opt = build_optimizer(self.model.parameters(), cfg.train, torch.device("cpu"))
        self.params = [p for g in self.opt.param_groups for p in g["params"]]
        self.grad_clip = cfg.train.grad_clip

    def step(self, x: torch.Tensor, ids: torch.Tensor, gen: torch.Generator, dtype: torch.dtype) -> None:
        batch = (x, ids, *self.objective.draw(x, gen))  # what ImageBatches(draw=objective.draw) yields
        with autocast(torch.device("cpu"), dtype):
            loss, _ = self.objective.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)  # the loop's train.grad_clip
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


class Ref:
    """The reference's model, noise scheduler, optimizer and EMA, stepped as train_text_to_image.py does."""

    def __init__(self, model_cfg, attn: tuple[int, ...], seed: int, ema: bool = True, lr: float = REF_LR):
        from diffusers import DDPMScheduler
        from diffusers.training_utils import EMAModel

        torch.manual_seed(seed)
        self.model = RefT2I(model_cfg, attn)
        self.cond_dropout = model_cfg.cond_dropout
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=1000)  # epsilon prediction, linear betas
        self.params = list(self.model.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=lr, betas=REF_BETAS, weight_decay=REF_WD, eps=REF_EPS)
        self.ema = EMAModel(self.params) if ema else None

    def step(self, x: torch.Tensor, ids: torch.Tensor, dtype: torch.dtype) -> None:
        latents = x * 2 - 1  # pixel space: the image is the "latent"
        noise = torch.randn_like(latents)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (len(x),)).long()
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        drop = torch.rand(len(x)) < self.cond_dropout
        with autocast(torch.device("cpu"), dtype):
            pred = self.model(noisy, t, self.model.text(ids, drop))
        F.mse_loss(pred.float(), noise.float(), reduction="mean").backward()
        torch.nn.utils.clip_grad_norm_(self.params, REF_CLIP)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def ema_step(self) -> None:
        """The example's ema_unet.step after each optimizer step (outside the timed training steps,
        as genforge's EMA update is)."""
        if self.ema is not None:
            self.ema.step(self.params)

    def sampling_model(self) -> RefT2I:
        """A copy holding the EMA weights (the example's --use_ema saves those)."""
        model = copy.deepcopy(self.model)
        if self.ema is not None:
            self.ema.copy_to(model.parameters())
        return model.eval()


@torch.no_grad()
def ref_sample(model: RefT2I, ids: torch.Tensor, steps: int, guidance: float, gen: torch.Generator) -> torch.Tensor:
    """StableDiffusionPipeline's loop in pixel space: DDIM (eta 0), guidance in one 2B batch; (B, C, H, W) in [0, 1]."""
    from diffusers import DDIMScheduler, DDPMScheduler

    sched = DDIMScheduler.from_config(DDPMScheduler(num_train_timesteps=1000).config)
    sched.set_timesteps(steps)
    B, c = len(ids), model.unet.config
    cond = model.text(ids)
    uncond = model.text(ids, torch.ones(B, dtype=torch.bool))
    both = (torch.cat([cond[0], uncond[0]]), torch.cat([cond[1], uncond[1]]))
    x = torch.randn((B, c.in_channels, c.sample_size, c.sample_size), generator=gen) * sched.init_noise_sigma
    for t in sched.timesteps:
        inp = sched.scale_model_input(torch.cat([x, x]), t)
        eps_c, eps_u = model(inp, t.expand(2 * B), both).chunk(2)
        x = sched.step(eps_u + guidance * (eps_c - eps_u), t, x).prev_sample
    return ((x.clamp(-1, 1) + 1) / 2).float()


def heldout_ids(tokenizer, text_len: int, n: int, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    _, caps, _ = scenes.make_scenes(n, "heldout", 32, seed, VOCAB)
    return torch.from_numpy(captions.encode_captions(tokenizer, caps, text_len, "held-out prompt")), caps


# --- the three measurements -------------------------------------------------------------------

def time_training(ours: Ours, ref: Ref, batches: ImageBatches, repeats: int, steps: int, dtype) -> tuple[float, float]:
    """(ours, reference) training images/s: medians of per-step times, A B A B on the same batches."""
    times = {"ours": [], "ref": []}
    x, ids = next(batches)[:2]
    ours.step(x, ids, torch.Generator().manual_seed(0), dtype)  # warm-up (first-call allocations)
    ref.step(x, ids, dtype)
    for r in range(repeats):
        run = [next(batches)[:2] for _ in range(steps)]
        for name in ("ours", "ref"):
            for k, (x, ids) in enumerate(run):
                t0 = time.perf_counter()
                if name == "ours":
                    ours.step(x, ids, torch.Generator().manual_seed(r * steps + k), dtype)
                else:
                    ref.step(x, ids, dtype)
                times[name].append(time.perf_counter() - t0)
        B = batches.batch_size
        print(f"train repeat {r}: genforge {B / statistics.median(times['ours'][-steps:]):.1f} img/s, "
              f"diffusers {B / statistics.median(times['ref'][-steps:]):.1f} img/s", flush=True)
    B = batches.batch_size
    return B / statistics.median(times["ours"]), B / statistics.median(times["ref"])


def time_sampling(ours: Ours, ref: Ref, ids: torch.Tensor, steps: int, repeats: int) -> tuple[float, float]:
    """(ours, reference) seconds to sample len(ids) images at `steps` steps with guidance, medians, alternating."""
    from genforge.sample.t2i import generate

    dit, unet = ours.model.eval(), ref.sampling_model()
    guidance = dit.config.guidance
    secs = {"ours": [], "ref": []}
    for r in range(repeats):
        t0 = time.perf_counter()
        generate(dit, ids, torch.Generator().manual_seed(r), steps=steps)
        secs["ours"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref_sample(unet, ids, steps, guidance, torch.Generator().manual_seed(r))
        secs["ref"].append(time.perf_counter() - t0)
        print(f"sample repeat {r}: {len(ids)} images x {steps} steps, guidance {guidance}: genforge "
              f"({dit.config.default_sampler}) {secs['ours'][-1]:.1f} s, diffusers (DDIM) {secs['ref'][-1]:.1f} s", flush=True)
    dit.train()
    return statistics.median(secs["ours"]), statistics.median(secs["ref"])


def train_ours(work: Path, minutes: float, threads: int, overrides: list[str]) -> tuple[Path, int]:
    """The recipe through genforge's loop for `minutes` of CPU time; (final checkpoint, steps taken)."""
    from genforge.train.log import read_metrics
    from genforge.train.run import run

    out = work / "ours"
    cfg = load_config(RECIPE, [f"train.max_minutes={minutes}", "train.budget_clock=cpu", "train.max_iters=100000000",
                               "train.eval_interval=100000000", "train.eval_iters=1", f"train.threads={threads}",
                               f"train.out_dir={out}", *overrides])
    ckpt = run(cfg, progress=False)
    return ckpt, max((s for s, _, _ in read_metrics(out / "metrics.csv")), default=0)


def train_ref(ref: Ref, batches: ImageBatches, minutes: float, dtype) -> int:
    """The reference's loop for `minutes` of this process's CPU time; the steps taken."""
    deadline, it = time.process_time() + 60 * minutes, 0
    ref.model.train()
    while time.process_time() < deadline:
        x, ids = next(batches)[:2]
        ref.step(x, ids, dtype)
        ref.ema_step()
        it += 1
    return it


def accuracies(ckpt: Path, ref: Ref, tokenizer, text_len: int, n: int, steps: int) -> tuple[dict, dict]:
    """geneval of both on the same n held-out prompts (seed 0), sampled from the EMA weights."""
    import genforge
    from genforge.eval.geneval import geneval
    from genforge.train.judge import scene_judge

    judge = scene_judge()
    lm = genforge.load(ckpt, device="cpu")
    unet = ref.sampling_model()
    guidance = lm.config.guidance
    done = {"ours": 0, "ref": 0}

    def ours_gen(caps):
        done["ours"] += len(caps)
        return lm.generate(caps, seed=done["ours"], steps=steps)

    def ref_gen(caps):
        ids = torch.from_numpy(captions.encode_captions(tokenizer, caps, text_len, "held-out prompt"))
        done["ref"] += len(caps)
        return ref_sample(unet, ids, steps, guidance, torch.Generator().manual_seed(done["ref"]))

    return geneval(ours_gen, judge, VOCAB, n=n, seed=0), geneval(ref_gen, judge, VOCAB, n=n, seed=0)


def show(acc: dict) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in acc.items() if k != "n") + f" (n={acc['n']})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-minutes", type=float, default=10.0, help="CPU minutes of training each, for (3)")
    ap.add_argument("--quick", action="store_true", help="measure speed only (skip the accuracy race)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="A B pairs of timed training steps")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per side per repeat")
    ap.add_argument("--sample-images", type=int, default=64)
    ap.add_argument("--sample-steps", type=int, default=50)
    ap.add_argument("--sample-repeats", type=int, default=0, help="0: 2, or 1 with --quick")
    ap.add_argument("--eval-prompts", type=int, default=256, help="held-out prompts geneval grades (seed 0)")
    ap.add_argument("--ref-attn", default="16,8", help="resolutions of the UNet's cross-attention blocks")
    ap.add_argument("--ref-lr", type=float, default=REF_LR, help="the reference's learning rate (the example's: 1e-4)")
    ap.add_argument("--ref-no-ema", action="store_true", help="train the reference without --use_ema")
    ap.add_argument("--num-scenes", type=int, default=0, help="training scenes (0: the recipe's)")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="training precision, both")
    ap.add_argument("--seed", type=int, default=0, help="0: the recipe's train.seed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = resolve_dtype(args.dtype, torch.device("cpu"))
    dtype_name = str(dtype).removeprefix("torch.")
    attn = tuple(int(r) for r in args.ref_attn.split(","))
    overrides = [f"train.dtype={dtype_name}", "train.device=cpu", *([f"train.seed={args.seed}"] if args.seed else []),
                 *([f"data.num_scenes={args.num_scenes}"] if args.num_scenes else [])]
    cfg = load_config(RECIPE, overrides)
    print(f"{isa.describe()}; threads {args.threads}; training dtype {dtype_name} on both sides "
          f"(train.dtype={args.dtype}), sampling float32 on both", flush=True)
    batches, tokenizer, text_len, model_cfg = open_data(cfg)
    ours, ref = Ours(cfg, model_cfg, cfg.train.seed), Ref(model_cfg, attn, cfg.train.seed, not args.ref_no_ema, args.ref_lr)
    tower = params(ours.model.text)
    print(f"data: {cfg.data.source} {model_cfg.image_size}x{model_cfg.image_size}, {len(batches.train)} training scenes, "
          f"batch {batches.batch_size}, captions {text_len} tokens of a {tokenizer.vocab_size}-word vocabulary", flush=True)
    print(f"genforge: {RECIPE} DiT patch {model_cfg.patch} {model_cfg.n_layer}x{model_cfg.n_embd}, "
          f"prediction={model_cfg.prediction}: {params(ours.model):,} parameters ({params(ours.model) - tower:,} "
          f"denoiser + {tower:,} text tower)", flush=True)
    print(f"diffusers: UNet2DConditionModel (32, 64, 64) {'/'.join(ref.model.layout)}, eps prediction: "
          f"{params(ref.model):,} parameters ({params(ref.model.unet):,} UNet + {params(ref.model.text):,} text tower, "
          f"the same architecture)", flush=True)

    img_s_ours, img_s_ref = time_training(ours, ref, batches, args.repeats, args.steps, dtype)
    print(f"training: genforge {img_s_ours:.1f} img/s, diffusers {img_s_ref:.1f} img/s (median step times, "
          f"{args.repeats} x {args.steps} steps each)", flush=True)
    ids, _ = heldout_ids(tokenizer, text_len, args.sample_images)
    sample_repeats = args.sample_repeats or (1 if args.quick else 2)
    sec_ours, sec_ref = time_sampling(ours, ref, ids, args.sample_steps, sample_repeats)
    print(f"sampling {args.sample_images} images x {args.sample_steps} steps with guidance: genforge {sec_ours:.1f} s, "
          f"diffusers {sec_ref:.1f} s (median of {sample_repeats})", flush=True)

    acc_ours = acc_ref = float("nan")
    if not args.quick:
        del ours
        ref = Ref(model_cfg, attn, cfg.train.seed, not args.ref_no_ema, args.ref_lr)  # fresh weights and optimizer
        batches.step = 0  # the same batch order as genforge's loop (ImageBatches with the same seed)
        work = Path(tempfile.mkdtemp(prefix="gf-t2i-bench-"))
        try:
            ckpt, steps_ours = train_ours(work, args.train_minutes, args.threads, overrides)
            steps_ref = train_ref(ref, batches, args.train_minutes, dtype)
            print(f"{args.train_minutes:g} CPU minutes of training each: genforge {steps_ours} steps, diffusers "
                  f"{steps_ref} steps", flush=True)
            a_ours, a_ref = accuracies(ckpt, ref, tokenizer, text_len, args.eval_prompts, args.sample_steps)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"held-out geneval, genforge:  {show(a_ours)}", flush=True)
        print(f"held-out geneval, diffusers: {show(a_ref)}", flush=True)
        acc_ours, acc_ref = a_ours["overall"], a_ref["overall"]
    print(f"ratio_img_s={img_s_ours / img_s_ref:.3f} ratio_sample={sec_ref / sec_ours:.3f} "
          f"acc_ours={acc_ours:.3f} acc_ref={acc_ref:.3f}")


if __name__ == "__main__":
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    main()
