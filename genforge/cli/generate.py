"""The verbs that make things from a checkpoint: `generate` (text, images, music), `speak`, `vocode`
and `interpolate`."""
from __future__ import annotations

import sys
from pathlib import Path

from genforge.cli._common import kind_of
from genforge.errors import GenforgeError


def add_generate(sub):
    p = sub.add_parser("generate", help="generate text (streams to stdout) or images (--out grid.png) from a checkpoint")
    p.add_argument("ckpt", help="checkpoint directory, or a run directory (uses its latest)")
    p.add_argument("--prompt", default="\n", help="text: the text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="text: tokens to generate at most")
    p.add_argument("--temperature", type=float, default=0.8, help="text: sampling temperature (0: greedy)")
    p.add_argument("--top-k", type=int, help="text: sample among the K likeliest tokens only (default: all)")
    p.add_argument("--top-p", type=float, help="text: nucleus sampling, the smallest set of tokens with this much "
                   "probability (default 1: all)")
    p.add_argument("--repetition-penalty", type=float, default=1.0,
                   help="text: divide the logits of tokens already seen by this (1: off)")
    p.add_argument("--stop", action="append", default=[], help="text: stop string (repeatable; default: none)")
    p.add_argument("--seed", type=int, help="seed of the sampling (default: random); sample i uses seed + i")
    p.add_argument("--num-samples", type=int, help="text: samples (default 1); images: grid size (default 64)")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights for sampling (auto: bfloat16 on CUDA, float32 on CPU)")
    _image_generate_args(p)
    _music_generate_args(p)
    _control_args(p)

    def run(a):
        import genforge

        kind = kind_of(a.ckpt)
        if kind == "vocode":
            raise GenforgeError(f"{a.ckpt}: a vocoder makes waveforms from mels: genforge vocode CKPT --wav FILE "
                                "(or --mel FILE.npy) --out out.wav")
        _refuse_foreign_options(a, p, kind)
        if kind == "text_image":
            return _generate_from_prompt(a, p)
        if kind == "music":
            return _generate_music(a, p)
        if kind == "audio":
            return _generate_audio(a, p)
        if kind in ("image", "label"):  # a picture grid, or the error that says why not
            return _generate_images(a)
        a.num_samples = 1 if a.num_samples is None else a.num_samples
        _check_sampling(a)
        lm = genforge.load(a.ckpt, device=a.device, dtype=a.dtype)
        kw = dict(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
                  repetition_penalty=a.repetition_penalty, stop=a.stop, **_controls(a))
        for i in range(a.num_samples):
            if a.num_samples > 1:
                print(f"--- sample {i + 1} ---")
            seed = None if a.seed is None else a.seed + i
            sys.stdout.write(a.prompt)
            if a.reject_with:  # a whole completion is judged before it is shown
                reject = dict(reject=a.reject_with, reject_below=a.reject_below, reject_tries=a.reject_tries)
                sys.stdout.write(lm.generate(a.prompt, seed=seed, **kw, **reject) + "\n")
                continue
            for piece in lm.stream(a.prompt, seed=seed, **kw):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")

    p.set_defaults(func=run)


# the options of `generate` that only some kinds of checkpoint take, and which kinds (every other
# kind than these goes the text way); --num-samples, --seed, --device and --dtype apply to all
_SAMPLING = {"text", "music", "audio", "text_image"}
_ONLY = {"text": ("repetition_penalty", "stop", "logit_bias", "block", "self_debias", "debias_decay",
                  "reject_with", "reject_below", "reject_tries"),
         "music": ("prompt_midi", "bars", "key", "meter", "tempo", "instrument", "style"),
         "audio": ("prompt_audio", "seconds"),
         "text_image": ("negative_prompt", "guidance", "steps", "sampler", "rerank", "clip"),
         "image": ("cls", "truncation", "show", "balance", "reject_judge")}
_APPLIES = {dest: {kind} for kind, dests in _ONLY.items() for dest in dests}
_APPLIES.update(prompt={"text", "text_image"}, max_new_tokens={"text", "music"}, temperature=_SAMPLING,
                top_k=_SAMPLING, top_p=_SAMPLING, out={"music", "audio", "text_image", "image"})
_WHAT = {"text": "text", "music": "symbolic music", "audio": "waveform", "text_image": "text-to-image",
         "image": "image"}


def _refuse_foreign_options(a, parser, kind: str) -> None:
    """GenforgeError for an option given that the checkpoint's kind does not take (rather than
    ignoring it), e.g. --prompt-audio on a text model."""
    kind = "image" if kind == "label" else kind if kind in _WHAT else "text"
    for action in parser._actions:
        kinds = _APPLIES.get(action.dest)
        if kinds and kind not in kinds and getattr(a, action.dest) != action.default:
            takes = " and ".join(sorted(_WHAT[k] for k in kinds))
            raise GenforgeError(f"{action.option_strings[0] if action.option_strings else action.dest}: "
                                f"for {takes} models; {a.ckpt} is a {_WHAT[kind]} model")


def _control_args(p) -> None:
    """Generation controls of text models (docs/bias.md)."""
    p.add_argument("--logit-bias", metavar="ID:BIAS[,ID:BIAS]", help="text: add BIAS in [-100, 100] to token ID's "
                   "logit (OpenAI's logit_bias; -100 bans, 100 forces)")
    p.add_argument("--block", action="append", default=[], metavar="PHRASE",
                   help="text: a word or phrase never to generate (repeatable)")
    p.add_argument("--self-debias", action="append", default=[], metavar="PREFIX",
                   help="text: self-debiasing against a text describing the bias, e.g. 'The following text "
                   "stereotypes people by gender:' (repeatable; Schick et al. 2021)")
    p.add_argument("--debias-decay", type=float, default=50.0, help="text: --self-debias's decay constant lambda")
    p.add_argument("--reject-with", metavar="CKPT", help="text: a reward checkpoint; completions it scores below "
                   "--reject-below are drawn again")
    p.add_argument("--reject-below", type=float, default=0.0, help="text: --reject-with's threshold")
    p.add_argument("--reject-tries", type=int, default=4, help="text: --reject-with: draws at most (the last is kept)")


def _controls(a) -> dict:
    """The generation controls of _control_args as TextModel keywords; GenforgeError for bad ones."""
    from genforge.sample.processors import parse_logit_bias

    bias = parse_logit_bias(a.logit_bias)
    if a.reject_tries < 1:
        raise GenforgeError(f"--reject-tries {a.reject_tries}: must be >= 1")
    return dict(logit_bias=bias or None, blocklist=a.block, self_debias=a.self_debias, debias_decay=a.debias_decay)


def _image_generate_args(p) -> None:
    p.add_argument("--out", help="images: the PNG grid to write (default samples.png), or DIR/ for one PNG per image")
    p.add_argument("--negative-prompt", help="text to image: what the images should not show (replaces the "
                   "unconditional model in guidance; default: none)")
    p.add_argument("--guidance", type=float, help="text to image: classifier-free guidance scale (1: none; "
                   "default: the model's, e.g. 3)")
    p.add_argument("--steps", type=int, help="text to image, diffusion: sampler steps (default: the model's, e.g. 30)")
    p.add_argument("--sampler", choices=["euler", "ddim", "ddpm"],
                   help="text to image, diffusion: euler (a flow model), ddim or ddpm (default: the model's)")
    p.add_argument("--rerank", type=int, default=1, help="text to image: draw N candidates per image and keep the "
                   "one --clip scores highest against the prompt (DALL-E's reranking; default 1: none)")
    p.add_argument("--clip", help="text to image, --rerank: the clip checkpoint that scores (genforge train clip/scenes)")
    p.add_argument("--class", dest="cls", type=int, help="images: the class of a class-conditional GAN")
    p.add_argument("--truncation", type=float, help="images: redraw latents beyond +-T (GANs; e.g. 1.0)")
    p.add_argument("--show", choices=["samples", "reconstructions", "traversal"], default="samples",
                   help="images: what the grid shows (reconstructions and traversal: VAEs)")
    p.add_argument("--balance", help="images: labels at these shares, uniform or a bias spec YAML: a class-conditional "
                   "model is asked for each class at them (with --reject-judge: any model, rejection sampling)")
    p.add_argument("--reject-judge", help="images, with --balance: a classifier checkpoint; samples are kept by its "
                   "label until each class has its share")


def _music_generate_args(p) -> None:
    p.add_argument("--prompt-midi", metavar="FILE", help="music: a MIDI file to continue")
    p.add_argument("--bars", type=int, help="music: continue only the first N bars of --prompt-midi")
    p.add_argument("--key", help="music: the key, e.g. C, F#m, Bb major, A minor (default: the model's choice, "
                   "or the prompt's)")
    p.add_argument("--meter", help="music: the time signature, e.g. 3/4 (default: the model's choice, or the prompt's)")
    p.add_argument("--tempo", type=float, help="music: quarter notes per minute (default: the model's choice)")
    p.add_argument("--instrument", type=int, help="music: General MIDI program 0..127 (default: the model's choice)")
    p.add_argument("--style", help="music: a style the model trained on, e.g. chorale, folk")
    p.add_argument("--prompt-audio", metavar="FILE", help="waveform models: a recording to continue (WAV, FLAC, "
                   "OGG; resampled to the model's rate with a warning)")
    p.add_argument("--seconds", type=float, default=10.0, help="waveform models: seconds of new audio per clip")


def _generate_music(a, parser) -> None:
    """Pieces of a music checkpoint: DIR/sample-I.mid, .wav and .png each."""
    import genforge
    from genforge.sample.music import save_samples

    model = genforge.load(a.ckpt, device=a.device, dtype=a.dtype)
    n = 1 if a.num_samples is None else a.num_samples
    max_new = 1024 if a.max_new_tokens == parser.get_default("max_new_tokens") else a.max_new_tokens
    samples = model.generate(n, max_new, a.temperature, a.top_k, a.top_p, a.seed, a.prompt_midi, a.bars,
                             a.key, a.meter, a.tempo, a.instrument, a.style)
    out = a.out or "music/"
    for sample, paths in zip(samples, save_samples(samples, out)):
        c = sample.conditions
        print(f"wrote {paths['mid']} (+ .wav, .png): {sample.notes} notes, {len(sample.wav) / sample.sample_rate:.1f} s, "
              + ", ".join(f"{k} {v}" for k, v in c.items()))


def _generate_from_prompt(a, parser) -> None:
    """Images of a text-to-image checkpoint for --prompt: a grid, or one PNG each under DIR/."""
    import genforge
    from genforge.sample.images import save_each, save_grid

    if a.prompt == parser.get_default("prompt"):
        raise GenforgeError('--prompt: a text-to-image model needs a description, e.g. --prompt "a red circle"')
    n = 16 if a.num_samples is None else a.num_samples
    if n < 1:
        raise GenforgeError(f"--num-samples {n}: must be >= 1")
    model = genforge.load(a.ckpt, device=a.device, dtype=a.dtype)
    given = {"steps": a.steps, "sampler": a.sampler, "temperature": a.temperature, "top_k": a.top_k}
    options = {k: v for k, v in given.items() if k in model.options and v != parser.get_default(k)}
    images = model.generate(a.prompt, n, guidance=a.guidance, negative_prompt=a.negative_prompt, seed=a.seed,
                            rerank=a.rerank, clip=a.clip, **options)
    scale = max(1, 64 // images.shape[-1])
    out = a.out or "samples.png"
    if out.endswith("/") or Path(out).is_dir():
        paths = save_each(images, out, scale)
        print(f"wrote {len(paths)} images to {Path(out)}")
    else:
        print(f"wrote {save_grid(images, out, scale=scale)}")


def _generate_images(a) -> None:
    from genforge.sample.image_verbs import generate_grid

    n = 64 if a.num_samples is None else a.num_samples
    if n < 1:
        raise GenforgeError(f"--num-samples {n}: must be >= 1")
    device = "cpu" if a.device == "auto" else a.device
    if a.balance or a.reject_judge:
        return _generate_balanced(a, n, device)
    out = generate_grid(a.ckpt, a.out or "samples.png", n, a.cls, a.seed or 0, a.truncation, a.show, device)
    print(f"wrote {out}")


def _generate_balanced(a, n: int, device: str) -> None:
    """A grid of samples at the --balance label shares (sorted by class), and the counts per class."""
    from genforge.api import balanced_samples
    from genforge.sample.image_verbs import load_images_model
    from genforge.sample.images import save_grid

    if not a.balance:
        raise GenforgeError("--reject-judge: give the shares to sample at with --balance (uniform or a spec YAML)")
    if a.cls is not None:
        raise GenforgeError("--class and --balance: one picks a single class, the other shares over all classes")
    model, _ = load_images_model(a.ckpt, device)
    images, labels = balanced_samples(model, n, a.balance, a.reject_judge, a.seed or 0, a.truncation)
    order = labels.argsort(stable=True)
    out = save_grid(images[order], a.out or "samples.png", scale=max(1, 64 // images.shape[-1]))
    counts = labels.bincount().tolist()
    print(f"wrote {out}: {n} samples, per class " + ", ".join(f"{k}: {c}" for k, c in enumerate(counts)))


def _check_sampling(a) -> None:
    if a.max_new_tokens < 0:
        raise GenforgeError(f"--max-new-tokens {a.max_new_tokens}: must be >= 0")
    if a.temperature < 0:
        raise GenforgeError(f"--temperature {a.temperature}: must be >= 0 (0 is greedy)")
    if a.top_k is not None and a.top_k < 1:
        raise GenforgeError(f"--top-k {a.top_k}: must be >= 1")
    if a.top_p is not None and not 0 < a.top_p <= 1:
        raise GenforgeError(f"--top-p {a.top_p}: must be in (0, 1]")
    if a.repetition_penalty <= 0:
        raise GenforgeError(f"--repetition-penalty {a.repetition_penalty}: must be > 0")
    if a.num_samples < 1:
        raise GenforgeError(f"--num-samples {a.num_samples}: must be >= 1")


def _generate_audio(a, parser) -> None:
    """Clips of a waveform model (audio_lm): DIR/sample-I.wav and its spectrogram .png each; the
    sampling temperature is the model's unless given."""
    import genforge
    from genforge.sample.audio_lm import save_samples

    model = genforge.load(a.ckpt, device=a.device, dtype=a.dtype)
    n = 1 if a.num_samples is None else a.num_samples
    temperature = None if a.temperature == parser.get_default("temperature") else a.temperature
    samples = model.generate(n, a.seconds, a.prompt_audio, temperature, a.top_k, a.top_p, a.seed)
    for sample, paths in zip(samples, save_samples(samples, a.out or "audio/")):
        prompt = f" (the first {sample.prompt_seconds:.2f} s: the prompt)" if sample.prompt_seconds else ""
        print(f"wrote {paths['wav']} (+ .png): {sample.seconds:.2f} s{prompt}")


def add_speak(sub):
    p = sub.add_parser("speak", help="say a text with a speech checkpoint (writes a WAV or FLAC file)")
    p.add_argument("ckpt", help="speech checkpoint directory, or a run directory (uses its latest)")
    p.add_argument("--text", required=True, help="what to say (at most 400 characters)")
    p.add_argument("--voice", default="default", help="one of the model's voices (default: its first)")
    p.add_argument("--speed", type=float, default=1.0, help="0.25 to 4: durations are divided by it")
    p.add_argument("--vocoder", help="a vocoder checkpoint (default: the one bundled in CKPT, else Griffin-Lim)")
    p.add_argument("--out", default="say.wav", help="output file (.wav or .flac)")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, ...")

    def run(a):
        from genforge.data.audio import write_audio
        from genforge.sample.speech import SpeechModel

        if kind_of(a.ckpt) != "speech":
            raise GenforgeError(f"{a.ckpt}: not a speech checkpoint (train one: genforge train tts/espeak)")
        if Path(a.out).suffix.lower() not in (".wav", ".flac"):
            raise GenforgeError(f"--out {a.out}: audio is written as .wav or .flac")
        model = SpeechModel.load(a.ckpt, a.device, a.vocoder)
        wav, rate = model.speak(a.text, a.voice, a.speed)
        write_audio(a.out, wav, rate)
        print(f"wrote {a.out}: {len(wav) / rate:.2f} s at {rate} Hz ({model.vocoder_name} vocoder)")

    p.set_defaults(func=run)


def add_vocode(sub):
    p = sub.add_parser("vocode", help="turn log-mel frames (--mel) or a recording (--wav) into a waveform "
                       "with a vocoder checkpoint")
    p.add_argument("ckpt", help="vocoder checkpoint directory, or a run directory (uses its latest)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--mel", help="a .npy log-mel spectrogram, (n_mels, frames) or (frames, n_mels)")
    src.add_argument("--wav", help="an audio file to reconstruct through the vocoder's own mel features")
    p.add_argument("--out", default="vocoded.wav", help="output file (.wav or .flac)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")

    def run(a):
        from genforge.sample.vocode import vocode_file

        r = vocode_file(a.ckpt, a.out, mel=a.mel, wav=a.wav, device=a.device)
        print(f"wrote {r['path']}: {r['seconds']:.2f} s at {r['sample_rate']} Hz "
              f"(real-time factor {r['rtf']:.3f})")

    p.set_defaults(func=run)


def add_interpolate(sub):
    p = sub.add_parser("interpolate", help="latent interpolation of a VAE/GAN checkpoint as a PNG strip or GIF")
    p.add_argument("ckpt", help="checkpoint directory, or a run directory (uses its latest)")
    p.add_argument("--out", required=True, help="strip.png or animation.gif")
    p.add_argument("--steps", type=int, default=10, help="images from one latent to the other")
    p.add_argument("--seed", type=int, default=0, help="seed of the two end latents")
    p.add_argument("--class", dest="cls", type=int, help="the class of a class-conditional GAN")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")

    def run(a):
        from genforge.sample.image_verbs import interpolate_to

        print(f"wrote {interpolate_to(a.ckpt, a.out, a.steps, a.seed, a.cls, a.device)}")

    p.set_defaults(func=run)
