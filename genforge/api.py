"""The Python API: `genforge.load(ckpt)` -> a TextModel, a PromptImageModel (text to image), a
MusicModel (genforge/sample/music.py), or an image model."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from genforge import checkpoint as ckpt_io
from genforge.cpu.decode import for_decoding
from genforge.data.tokenizer import Tokenizer
from genforge.device import resolve_device
from genforge.errors import CheckpointError, ConfigError, DataError
from genforge.families import resolve
from genforge.sample.processors import controls, resample_until
from genforge.sample.text import generate_ids, prompt_ids, stream_text, truncate

# From this size on, CPU decoding is bound by streaming weights, and for_decoding's layouts win
# (GPT-2 small: 1.3x in fp32, 2.3x in bf16); below it, per-op overhead dominates and the plain model is as fast.
DECODE_COPY_MIN_PARAMS = 20_000_000
MAX_RERANK = 64  # candidates per image a text-to-image model's rerank draws at most


def check_rerank(rerank: int) -> None:
    """ConfigError unless rerank (candidates per image) is in [1, MAX_RERANK]."""
    if not 1 <= rerank <= MAX_RERANK:
        raise ConfigError(f"rerank={rerank}: must be in [1, {MAX_RERANK}] (1: no reranking)")


def load(ckpt: str | Path, device: str = "auto", dtype: str = "auto"):
    """A checkpoint ready to use, by what its family makes (genforge/families.py): a TextModel for
    a language model; a PromptImageModel for a text-to-image model (.generate(prompt, ...)); for
    an image model the module that samples, in eval mode, with .sample(n, cond=None,
    generator=None) -> (n, C, H, W) images in [0, 1]. CheckpointError for a family that makes
    neither."""
    path, config, fam = ckpt_io.peek(ckpt)
    if fam.kind == "text":
        return TextModel.load(path, device=device, dtype=dtype)
    if fam.kind == "text_image":
        return PromptImageModel.load(path, device=device, dtype=dtype)
    if fam.kind == "image":
        return load_model(path, device, dtype).model
    if fam.kind == "speech":  # .speak(text, voice, speed) -> (waveform, sample rate)
        from genforge.sample.speech import SpeechModel

        return SpeechModel.load(path, device)
    if fam.kind == "music":  # .generate(...) -> MusicSample list (score, MIDI bytes, waveform; .save(stem))
        from genforge.sample.music import MusicModel

        return MusicModel.load(path, device=device, dtype=dtype)
    if fam.kind == "audio":  # .generate(...) -> AudioSample list (waveform, codes; .save(stem)), .bits(wav)
        from genforge.sample.audio_lm import AudioLMModel

        return AudioLMModel.load(path, device=device, dtype=dtype)
    raise CheckpointError(f"{path}: a {config['family']} checkpoint makes neither text nor images "
                          "(genforge.checkpoint.load(path).model gives its model)")


def load_model(ckpt: str | Path, device: str = "auto", dtype: str = "auto") -> ckpt_io.Loaded:
    """A checkpoint's model for inference on device (auto: CUDA, then MPS, then CPU) in dtype (auto:
    bfloat16 for a language model on CUDA, else float32), eval mode; on CPU a large or bf16 decoder gets the weight
    layouts of genforge/cpu/decode.py."""
    dev = resolve_device(device)
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise CheckpointError(f"dtype={dtype!r}: expected auto, float32, bfloat16 or float16")
    if dev.type == "cpu" and dtype == "float16":
        raise CheckpointError("dtype=float16 needs a CUDA device; on CPU use float32 or bfloat16")
    loaded = ckpt_io.load(ckpt)
    model, text = loaded.model, loaded.family.kind == "text"
    if dtype == "auto":
        dtype = "bfloat16" if dev.type == "cuda" and text else "float32"
    if dev.type == "cpu" and text:  # CPU matrix-vector products want their own weight layouts
        if dtype == "bfloat16" or sum(p.numel() for p in model.parameters()) >= DECODE_COPY_MIN_PARAMS:
            model = for_decoding(model, getattr(torch, dtype))
    else:
        model = model.to(dev, getattr(torch, dtype))
    loaded.model = model.eval()
    return loaded


class TextModel:
    """A language model and its tokenizer, ready to generate."""

    def __init__(self, model, tokenizer: Tokenizer, path: Path):
        self.model, self.tokenizer, self.path = model, tokenizer, path

    @classmethod
    def load(cls, ckpt: str | Path, device: str = "auto", dtype: str = "auto") -> TextModel:
        loaded = load_model(ckpt, device, dtype)
        model, tokenizer, path = loaded.model, loaded.tokenizer, loaded.path
        tok_file = path / "tokenizer.json"
        if tokenizer is None:
            raise CheckpointError(f"{path}: no tokenizer.json; this checkpoint cannot generate text")
        if tokenizer.vocab_size > model.config.vocab_size:
            raise CheckpointError(f"{tok_file}: {tokenizer.vocab_size} tokens but the model has vocab_size={model.config.vocab_size}")
        return cls(model, tokenizer, path)

    def stream(self, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8, top_k: int | None = None,
               top_p: float | None = None, repetition_penalty: float = 1.0, stop: Sequence[str] = (),
               seed: int | None = None, **controls) -> Iterator[str]:
        """Yield the continuation of prompt piece by piece as it is generated. controls: the
        generation controls of `controls` (logit_bias, blocklist, self_debias, debias_decay)."""
        return stream_text(self.model, self.tokenizer, prompt, max_new_tokens, stop=stop, seed=seed,
                           temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                           processors=self.controls(1, **controls))

    def controls(self, batch: int = 1, logit_bias: dict | None = None, blocklist: Sequence[str] = (),
                 self_debias: Sequence[str] = (), debias_decay: float = 50.0) -> list:
        """Logits processors for `batch` rows (genforge/sample/processors.py): logit_bias
        ({token id: bias in [-100, 100]}, OpenAI's), blocklist (words and phrases never generated),
        self_debias (bias-describing prefixes, Schick et al. 2021) with its decay. ConfigError for
        a bad value."""
        return controls(self.model, self.tokenizer, batch, logit_bias, blocklist, self_debias, debias_decay)

    def generate(self, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8, top_k: int | None = None,
                 top_p: float | None = None, repetition_penalty: float = 1.0, stop: Sequence[str] = (),
                 seed: int | None = None, num_samples: int = 1, reject: str | Path | Callable | None = None,
                 reject_below: float = 0.0, reject_tries: int = 4, **controls) -> str | list[str]:
        """The continuation of prompt (a list of num_samples continuations when num_samples > 1).
        controls as in stream. reject: classifier rejection sampling, a reward checkpoint or a
        function (prompt, completion) -> score; a completion scoring below reject_below is drawn
        again, up to reject_tries draws in all (the last draw is kept)."""
        if reject is not None:
            score = load_scorer(reject) if isinstance(reject, (str, Path)) else reject
            kw = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                      repetition_penalty=repetition_penalty, stop=stop, **controls)
            texts = []
            for j in range(num_samples):
                def draw(i: int, j: int = j) -> str:
                    return self.generate(prompt, seed=None if seed is None else seed + j * reject_tries + i, **kw)
                texts.append(resample_until(draw, lambda t: score(prompt, t) >= reject_below, reject_tries)[0])
            return texts[0] if num_samples == 1 else texts
        if num_samples == 1:
            return "".join(self.stream(prompt, max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop, seed,
                                       **controls))
        device = next(self.model.parameters()).device
        idx = torch.tensor([prompt_ids(self.tokenizer, prompt)] * num_samples, device=device)
        gen = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        out = generate_ids(self.model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           repetition_penalty=repetition_penalty, generator=gen,
                           processors=self.controls(num_samples, **controls))
        texts = []
        for row in out.tolist():
            if self.tokenizer.eot_id in row:
                row = row[: row.index(self.tokenizer.eot_id)]
            texts.append(truncate(self.tokenizer.decode(row), stop))
        return texts


def load_scorer(ckpt: str | Path) -> Callable[[str, str], float]:
    """(prompt, completion) -> the reward a reward-model checkpoint (genforge align reward) gives
    the completion. CheckpointError for a checkpoint that scores nothing."""
    loaded = load_model(ckpt, "cpu")
    if loaded.family.kind != "score" or loaded.tokenizer is None:
        raise CheckpointError(f"{loaded.path}: a {loaded.config.get('family')} checkpoint is not a reward model "
                              "with a tokenizer (train one: genforge align reward)")
    model, tok = loaded.model, loaded.tokenizer

    def score(prompt: str, completion: str) -> float:
        ids = prompt_ids(tok, prompt)
        full = ids + tok.encode(completion)
        with torch.inference_mode():
            return float(model.score(torch.tensor([full]), torch.tensor([len(ids)]), torch.tensor([len(full)]))[0])

    return score


class PromptImageModel:
    """A text-to-image model and its caption tokenizer, ready to generate images from a prompt."""

    def __init__(self, loaded: ckpt_io.Loaded):
        self.model, self.tokenizer, self.path, self.family = loaded.model, loaded.tokenizer, loaded.path, loaded.family
        self.loaded_config = loaded.config  # config.json
        if self.tokenizer is None:
            raise CheckpointError(f"{self.path}: no tokenizer.json; this text-to-image checkpoint cannot read prompts")
        self._sample = resolve(self.family.generate)
        self._clips: dict[str, tuple[torch.nn.Module, object]] = {}  # rerank's CLIPs by path

    @classmethod
    def load(cls, ckpt: str | Path, device: str = "auto", dtype: str = "auto") -> PromptImageModel:
        return cls(load_model(ckpt, device, dtype))

    @property
    def config(self):
        """The model config (image_size, channels, text_len and the sampling defaults)."""
        return self.model.config

    @property
    def options(self) -> list[str]:
        """The sampling options this family takes beyond guidance and the negative prompt (e.g.
        steps and sampler for diffusion, temperature and top_k for DALL-E style)."""
        skip = {"model", "ids", "generator", "guidance", "negative", "check"}
        return [n for n in inspect.signature(self._sample).parameters if n not in skip]

    def encode(self, prompts: Sequence[str], where: str = "prompt") -> torch.Tensor:
        """Caption ids (B, text_len) of prompts; DataError for an empty or over-long prompt or an
        unknown word, naming it."""
        from genforge.data.caption_batches import encode_prompt, pad_id

        text_len, distinct = self.model.config.text_len, list(dict.fromkeys(prompts))
        rows = {p: encode_prompt(self.tokenizer, p, text_len, where if len(distinct) == 1 else f"{where} {i}")
                for i, p in enumerate(distinct)}
        ids = torch.full((len(prompts), text_len), pad_id(self.tokenizer), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, :len(rows[p])] = torch.tensor(rows[p])
        return ids.to(next(self.model.parameters()).device)

    def generate(self, prompt: str | Sequence[str], num_samples: int = 1, guidance: float | None = None,
                 negative_prompt: str | None = None, seed: int | None = None,
                 check: Callable[[], None] | None = None, rerank: int = 1, clip: str | Path | None = None,
                 **options) -> torch.Tensor:
        """Images (n, C, H, W) in [0, 1]: num_samples of one prompt, or one per prompt of a list.
        guidance (classifier-free scale), the negative prompt and the options default to the
        model's; one seed gives the same images bitwise. rerank N > 1 draws N candidates for each
        image and keeps the one a CLIP (the clip checkpoint) scores highest against its prompt
        (DALL·E's reranking, Ramesh et al. 2021 sec. 2.5); the candidates of image i are images
        i*N .. i*N+N-1 of the same call with rerank 1 and num_samples n*N. ConfigError for an unknown
        option or a value out of range, DataError for a prompt the model cannot read."""
        prompts = [prompt] * num_samples if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise DataError("no prompt given")
        check_rerank(rerank)
        if rerank > 1:
            from genforge.eval.clipscore import clip_score

            if clip is None:
                raise ConfigError("rerank needs a CLIP to score the candidates: clip=CKPT (genforge train clip/scenes)")
            scorer, tokenizer = self.scorer(clip)
            many = [p for p in prompts for _ in range(rerank)]
            images = self.generate(many, guidance=guidance, negative_prompt=negative_prompt, seed=seed, check=check,
                                   **options)
            scores = clip_score(scorer, tokenizer, images, many).view(len(prompts), rerank)
            return images[scores.argmax(1).to(images.device) + torch.arange(len(prompts), device=images.device) * rerank]
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ConfigError(f"{unknown[0]}: not a sampling option of a {self.model.__class__.__name__} "
                              f"(it takes: {', '.join(['guidance', 'negative_prompt', *self.options])})")
        ids = self.encode(prompts)
        negative = self.encode([negative_prompt] * len(prompts), "negative prompt") if negative_prompt else None
        device = ids.device
        gen = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        options = {k: v for k, v in options.items() if v is not None}
        return self._sample(self.model, ids, generator=gen, guidance=guidance, negative=negative, check=check, **options)

    def scorer(self, ckpt: str | Path) -> tuple[torch.nn.Module, object]:
        """(model, tokenizer) of the clip checkpoint rerank scores by, loaded once per path on this
        model's device; CheckpointError for a checkpoint that is no CLIP."""
        from genforge.eval.clipscore import load_clip

        key = str(Path(ckpt).resolve())
        if key not in self._clips:
            self._clips[key] = load_clip(ckpt, next(self.model.parameters()).device)
            self._clips[key][0].eval()
        return self._clips[key]

    def evaluate(self, metrics: Sequence[str] = ("geneval",), n: int = 256, seed: int = 0, clip: str | Path | None = None,
                 judge: str | Path | None = None, rerank: int = 1, **options) -> dict[str, float]:
        """Offline metrics on n held-out prompts of the procedural scenes the model trained on:
        geneval (per-task accuracy of the scene judge, genforge/eval/geneval.py, trained and
        cached on first use unless `judge` names one), clipscore (mean CLIPScore under the clip
        checkpoint `clip`) and fid (Frechet distance to the held-out scenes' own images, on that
        CLIP's image features; kid its kernel counterpart). Sampling options as in generate; rerank N
        keeps the best of N candidates by that same CLIP (its clipscore is then no independent
        measure). ConfigError for a model not trained on builtin:scenes, a metric it cannot
        compute, or clip missing where needed."""
        from genforge.data import scenes
        from genforge.data.caption_batches import scene_vocab
        from genforge.eval import clipscore, geneval, image_metrics
        from genforge.train.judge import scene_judge

        known = ("geneval", "clipscore", "fid", "kid")
        for m in metrics:
            if m not in known:
                raise ConfigError(f"--metrics {m}: a text-to-image model has {', '.join(known)}")
        source = ((self.loaded_config.get("run") or {}).get("data") or {}).get("source", "")
        vocab = scene_vocab(source)
        if vocab is None:
            raise ConfigError(f"{self.path}: trained on {source!r}; these metrics grade the procedural scenes "
                              "(data.source=builtin:scenes[:VOCAB]), whose held-out prompts come with specs")
        if {"clipscore", "fid", "kid"} & set(metrics) and clip is None:
            raise ConfigError("clipscore, fid and kid need a CLIP: --clip CKPT (train one: genforge train clip/scenes)")
        real, captions, specs = scenes.make_scenes(n, "heldout", self.config.image_size, seed, vocab)
        made = torch.cat([self.generate(captions[k:k + 64], seed=seed + k, rerank=rerank, clip=clip, **options).cpu()
                          for k in range(0, n, 64)])
        result: dict[str, float] = {"n": n}
        if "geneval" in metrics:
            found = scene_judge(judge).judge(made, specs)
            result.update({f"geneval_{k}": v for k, v in geneval.accuracy(found).items() if k != "n"})
        if clip is not None:
            model, tokenizer = clipscore.load_clip(clip)
            if "clipscore" in metrics:
                result["clipscore"] = float(clipscore.clip_score(model, tokenizer, made, captions).mean())
            real_x = torch.from_numpy(real).permute(0, 3, 1, 2).float() / 255
            if "fid" in metrics:
                result["fid"] = image_metrics.fid(real_x, made, _ClipImages(model))
            if "kid" in metrics:
                result["kid"], result["kid_std"] = image_metrics.kid(real_x, made, _ClipImages(model))
        return result


class _ClipImages(torch.nn.Module):
    """A CLIP's image features of (N, C, H, W) images in [0, 1], for FID."""

    def __init__(self, clip: torch.nn.Module):
        super().__init__()
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from genforge.eval.clipscore import as_model_images

        return self.clip.encode_image(as_model_images(x, self.clip).to(next(self.clip.parameters()).device))


# --- output bias of image models (eval/bias_images.py; sample/balanced.py) ----------------------

def balanced_samples(model: torch.nn.Module, n: int, balance: str | Path = "uniform", judge: str | Path | None = None,
                     seed: int = 0, truncation: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (n, C, H, W) in [0, 1], their classes (n,)) at the label shares `balance` names
    ("uniform", or a bias spec whose label attribute has a target): a class-conditional model is
    asked for each class at those shares; with `judge` (a classifier checkpoint) any image model's
    samples are kept by the judge's label until each class has its share (rejection sampling)."""
    import numpy as np

    from genforge.eval import bias_images
    from genforge.sample import balanced

    if judge is None:
        k = getattr(model.config, "n_cond", 0)
        if not k:
            raise ConfigError(f"a {type(model).__name__} takes no class: class-conditional sampling needs a GAN with "
                              "model.conditional=true; pass a judge for rejection sampling instead")
        names = [str(i) for i in range(k)]
        shares = np.full(k, 1 / k) if str(balance) == "uniform" else bias_images.sampling_target(balance, names)
        return balanced.conditional_samples(model, n, shares, seed, truncation)
    clf, names, _ = bias_images.load_judge(judge, model.config)
    images, labels, _ = balanced.rejection_samples(model, clf, n, bias_images.sampling_target(balance, names), seed,
                                                   truncation)
    return images, labels


def bias_report(ckpt: str | Path, judge: str | Path | None = None, spec: str | Path | None = None,
                num_samples: int = 10000, seed: int = 0, sampling: str = "plain", balance: str | Path = "uniform",
                device: str = "cpu") -> dict:
    """Output bias of a checkpoint (genforge eval CKPT --metrics bias): for an image model, the
    label shares of num_samples samples by the classifier checkpoint `judge`, TV and fairness
    discrepancy from the spec's target, per-class recall and the judge's confusion matrix
    (eval/bias_images.py); sampling "plain" (the model's own), "conditional" (a class-conditional
    model at the shares `balance` names) or "reject" (rejection sampling by the judge toward them).
    For a text-to-image model, attribute shares of images made from neutral prompts, read by the
    scene judge (`judge` a scene-judge checkpoint, default the cached one)."""
    from genforge.eval import bias_images
    from genforge.sample import balanced

    path, config, fam = ckpt_io.peek(ckpt)
    if fam.kind == "text_image":
        from genforge.data.caption_batches import scene_vocab
        from genforge.train.judge import scene_judge

        model = PromptImageModel.load(path, device=device)
        vocab = scene_vocab(((config.get("run") or {}).get("data") or {}).get("source", ""))
        if vocab is None:
            raise ConfigError(f"{path}: the scene judge reads the procedural scenes (data.source=builtin:scenes)")
        return bias_images.evaluate_bias_t2i(model, scene_judge(judge), num_samples, seed, spec, vocab)
    if fam.kind != "image":
        raise ConfigError(f"{path}: a {config['family']} checkpoint makes no images; --metrics bias of images needs "
                          "an image or text-to-image model")
    if sampling not in ("plain", "conditional", "reject"):
        raise ConfigError(f"sampling={sampling!r}: expected plain, conditional or reject")

    def sampler(model, clf, names, n, seed):
        shares = bias_images.sampling_target(balance, names)
        if sampling == "conditional":
            bias_images.check_model_classes(model, names)
            return balanced.conditional_samples(model, n, shares, seed)[0], {"sampling": sampling}
        images, _, drawn = balanced.rejection_samples(model, clf, n, shares, seed)
        return images, {"sampling": sampling, "drawn": drawn}

    return bias_images.evaluate_bias(path, judge, spec, num_samples, seed, None if sampling == "plain" else sampler,
                                     device)
