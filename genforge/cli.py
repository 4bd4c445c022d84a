"""`genforge <verb>`: each verb parses its arguments and calls one function of the package.

Errors genforge raises on purpose (GenforgeError) print as one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from genforge.errors import GenforgeError, Interrupted


class _Formatter(argparse.HelpFormatter):
    """Each option's help ends with its default, unless it names it already or has none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or action.default in (None, False, [], argparse.SUPPRESS)
                or "default" in text):
            return text
        return f"{text} (default %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kw)


def build_parser() -> argparse.ArgumentParser:
    """`genforge`'s parser: one subparser per verb (its `verbs(parser)` by name)."""
    from genforge.version import __version__

    parser = _Parser(prog="genforge", description="Train, sample and evaluate generative models.")
    parser.add_argument("--version", action="version", version=f"genforge {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for add in (_quickstart, _prepare, _audit, _train, _generate, _speak, _vocode, _eval, _interpolate, _serve, _reviewers, _feedback):
        add(sub)
    _finetune_verbs(sub)
    _align(sub)
    return parser


def verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """parser's subcommands by name ({} when it has none)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subs[0].choices) if subs else {}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The verb and its options from argv (args.func runs it); a bad option exits with status 2
    and the verb's usage."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `train CONFIG --resume key=value`: overrides may follow options
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides += extra
    # `prepare a.txt --out DIR b.txt`: sources may follow options too
    elif extra and args.verb == "prepare" and not any(e.startswith("-") for e in extra):
        args.source += extra
    elif extra:
        verb = verbs(parser)[args.verb]
        verb.error(f"unrecognized arguments: {' '.join(extra)}{_did_you_mean(verb, extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        return args.func(args) or 0
    except GenforgeError as e:
        print(f"genforge {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:  # SIGTERM/SIGINT: training saved a checkpoint and stopped
        if os.environ.get("RANK", "0") == "0":
            print(f"genforge {args.verb}: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print(f"genforge {args.verb}: interrupted", file=sys.stderr)
        return 130


def _did_you_mean(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """' (did you mean --prompt?)' for the first unknown option that looks like one of parser's."""
    import difflib

    known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    for word in extra:
        flag = word.split("=", 1)[0]
        if flag.startswith("-") and (close := difflib.get_close_matches(flag, known, n=1, cutoff=0.6)):
            return f" (did you mean {close[0]}?)"
    return ""


def _quickstart(sub):
    from genforge.quickstart import STEPS

    p = sub.add_parser("quickstart", help="one short run per modality on embedded data: "
                       + "; ".join(f"{s.name}: {s.what}" for s in STEPS.values()))
    p.add_argument("--out", default="runs/quickstart", help="output directory (default runs/quickstart)")
    names = ",".join(STEPS)
    p.add_argument("--only", type=lambda v: v.split(","), metavar="STEP[,STEP]", help=f"run only these steps ({names})")
    p.add_argument("--skip", type=lambda v: v.split(","), default=[], metavar="STEP[,STEP]", help="skip these steps")
    for step in STEPS.values():
        p.add_argument(step.flag, type=float, default=step.minutes, dest=f"minutes_{step.name}", metavar="M",
                       help=f"the {step.name} step's training time budget in minutes (default {step.minutes:g})")
    p.add_argument("--no-image", action="store_true", help=argparse.SUPPRESS)  # before --skip image existed
    p.add_argument("--no-progress", action="store_true", help="log lines instead of progress bars (for piped logs)")

    def run(a):
        from genforge.quickstart import quickstart

        minutes = {name: getattr(a, f"minutes_{name}") for name in STEPS}
        quickstart(a.out, a.only, a.skip + (["image"] if a.no_image else []), minutes, progress=not a.no_progress)

    p.set_defaults(func=run)


def _prepare(sub):
    p = sub.add_parser("prepare", help="tokenize a text corpus into token shards")
    p.add_argument("source", nargs="+",
                   help="text files (.txt/.md, also .gz/.zst), folders, globs ('corpus/*.txt'), .jsonl[.gz|.zst] "
                        "or .parquet files (with --field), a saved Hugging Face dataset directory, "
                        "builtin:shakespeare, or jsb:PATH (the JSB Chorales JSON: its train/val/test frames as tokens)")
    p.add_argument("--tokenizer", default="char", help="char | bpe:VOCAB (default char)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--field", help="required for .jsonl, .parquet and datasets sources: the record key or column "
                   "holding the text (no default)")
    p.add_argument("--errors", choices=["strict", "replace"], default="strict",
                   help="invalid UTF-8: a bad record (strict) or substitute U+FFFD (replace)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of the documents held out for validation")
    p.add_argument("--tokenizer-file", help="reuse this tokenizer.json instead of training one")
    p.add_argument("--workers", type=int, default=1, help="tokenizer processes (output is the same for any N)")
    p.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard file (default 100M)")
    p.add_argument("--tokenizer-sample", metavar="BYTES",
                   help="train the tokenizer on the first BYTES of text only (e.g. 100MB; default: all of it)")
    p.add_argument("--on-bad-record", choices=["error", "skip"], default="error",
                   help="a bad record (invalid UTF-8 or JSON, missing field, unknown char): stop (default) "
                        "or log it to stderr and skip it")
    p.add_argument("--max-bad-ratio", type=float, default=0.01,
                   help="with --on-bad-record skip, stop once more than this fraction of records is bad (0.01)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for piped logs)")
    p.add_argument("--cda", metavar="PAIRS", help="counterfactual data augmentation of the train split: a word-pair "
                   "file ('he she' per line) or a bias spec YAML with swaps (docs/bias.md)")
    p.add_argument("--cda-mode", choices=["augment", "replace"], default="augment",
                   help="--cda: add each document's counterfactual (augment) or write it instead (replace)")

    def run(a):
        from genforge.data.cda import load_swaps
        from genforge.data.prepare import parse_bytes, prepare
        from genforge.data.shards import TokenData

        sample = parse_bytes(a.tokenizer_sample) if a.tokenizer_sample else None
        out = prepare(a.source, a.tokenizer, a.out, a.field, a.errors, a.val_fraction, a.shard_tokens,
                      a.tokenizer_file, workers=a.workers, tokenizer_sample=sample, on_bad_record=a.on_bad_record,
                      max_bad_ratio=a.max_bad_ratio, progress=not a.no_progress,
                      cda=load_swaps(a.cda) if a.cda else None, cda_mode=a.cda_mode)
        data = TokenData(out)
        print(f"{out}: vocab {data.vocab_size}, {data.tokens('train'):,} train + {data.tokens('val'):,} val tokens ({data.dtype})")

    p.set_defaults(func=run)


def _audit(sub):
    p = sub.add_parser("audit", help="bias audit of a dataset: attribute balance, co-occurrence, duplicates (docs/bias.md)")
    p.add_argument("data", help="prepared token data, text/jsonl files or folders, an image dataset or a captioned "
                   "one (builtin:scenes, metadata.jsonl folders, .npz with captions)")
    p.add_argument("--spec", help="bias spec YAML: attributes, targets, co-occurrence pairs (docs/bias.md; default: "
                   "duplicates only for text, the label distribution for images)")
    p.add_argument("--out", help="write audit.md, audit.json and PNG charts here (default: print the Markdown only)")
    p.add_argument("--kind", choices=["tokens", "text", "images", "captions"], help="what DATA is (default: detected)")
    p.add_argument("--field", help="jsonl/parquet: the key holding the text (default text)")
    p.add_argument("--no-duplicates", action="store_true", help="skip the exact and near-duplicate search")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--baseline", metavar="DATA", help="the data before a mitigation (e.g. prepared without --cda), "
                   "audited the same way: prints both headline numbers and the change")

    def run(a):
        from genforge.data.audit import as_json, audit, markdown, summary, write_report
        from genforge.eval.bias_spec import load_spec

        spec = load_spec(a.spec) if a.spec else None
        report = audit(a.data, spec, a.kind, a.field, duplicates=not a.no_duplicates)
        if a.baseline:
            before = audit(a.baseline, spec, a.kind, a.field, duplicates=not a.no_duplicates)
            print(as_json({"baseline": before, "data": report}) if a.json else
                  _comparison(summary(before), summary(report), ("baseline", "data")))
            return
        if a.out:
            paths = write_report(report, a.out)
            print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
        print(as_json(report) if a.json else markdown(report).rstrip("\n"))

    p.set_defaults(func=run)


def _train(sub):
    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="a YAML file of config overrides, or a named recipe shipped with genforge (e.g. lm/shakespeare_char)")
    p.add_argument("overrides", nargs="*", help="dotted overrides: model.n_layer=6 train.lr=3e-4")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in train.out_dir (its checkpoints and logs); without it, or "
                        "--resume, an existing run is refused")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    p.add_argument("--verify", action="store_true", help="check each data shard's sha256 against the manifest")

    def run(a):
        from genforge.run_config import load_config
        from genforge.train.run import claim_out_dir
        from genforge.train.run import run as train_run

        overrides = a.overrides + (["data.verify=true"] if a.verify else [])
        cfg = load_config(a.config, overrides)
        if os.environ.get("RANK", "0") == "0" or not a.overwrite:  # under torchrun, rank 0 clears the old run
            claim_out_dir(cfg.train.out_dir, a.resume, a.overwrite)
        ckpt = train_run(cfg, resume=a.resume, progress=not a.no_progress)
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks
            print(f"checkpoint: {ckpt}")

    p.set_defaults(func=run)


def _generate(sub):
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

        kind = _kind(a.ckpt)
        if kind == "text_image":
            return _generate_from_prompt(a, p)
        if kind == "music":
            return _generate_music(a, p)
        if kind in ("image", "label"):  # a picture grid, or the error that says why not
            return _generate_images(a)
        if kind == "vocode":
            raise GenforgeError(f"{a.ckpt}: a vocoder makes waveforms from mels: genforge vocode CKPT --wav FILE "
                                "(or --mel FILE.npy) --out out.wav")
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


def _speak(sub):
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

        if _kind(a.ckpt) != "speech":
            raise GenforgeError(f"{a.ckpt}: not a speech checkpoint (train one: genforge train tts/espeak)")
        if Path(a.out).suffix.lower() not in (".wav", ".flac"):
            raise GenforgeError(f"--out {a.out}: audio is written as .wav or .flac")
        model = SpeechModel.load(a.ckpt, a.device, a.vocoder)
        wav, rate = model.speak(a.text, a.voice, a.speed)
        write_audio(a.out, wav, rate)
        print(f"wrote {a.out}: {len(wav) / rate:.2f} s at {rate} Hz ({model.vocoder_name} vocoder)")

    p.set_defaults(func=run)


def _vocode(sub):
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


def _eval_speech(a, p) -> dict:
    """`genforge eval` of a speech checkpoint: genforge/eval/tts.py on held-out teacher sentences."""
    from genforge.eval.tts import METRICS, evaluate_speech
    from genforge.sample.speech import SpeechModel, griffin_lim_vocoder

    model = SpeechModel.load(a.ckpt, "cpu" if a.device == "auto" else a.device, a.vocoder)
    n = 20 if a.num_samples == p.get_default("num_samples") else a.num_samples
    vocoders = {model.vocoder_name: model.vocoder()}
    if model.vocoder_name != "griffin-lim":
        vocoders["griffinlim"] = griffin_lim_vocoder(model.sample_rate)
    metrics = [m.strip() for m in a.metrics.split(",")] if a.metrics else list(METRICS)
    return evaluate_speech(model.model, vocoders, metrics, n, val_fraction=model.val_fraction)


def _eval_image_bias(a, p, kind: str) -> None:
    """`genforge eval --metrics bias` of an image or text-to-image checkpoint (eval/bias_images.py):
    the label (attribute) shares, TV, fairness discrepancy and the judge's confusion matrix."""
    from genforge.api import bias_report

    default = p.get_default("num_samples") == a.num_samples
    n = (256 if kind == "text_image" else 10000) if default else a.num_samples
    device = "cpu" if a.device == "auto" else a.device
    r = bias_report(a.ckpt, a.judge, a.spec, n, a.seed, a.sampling, a.balance, device)
    if a.baseline:  # the model before the mitigation, by its own sampler: both, and the change
        before = bias_report(a.baseline, a.judge, a.spec, n, a.seed, "plain", a.balance, device)
        print(json.dumps({"baseline": before, "model": r}) if a.json else _comparison(before, r))
        return
    if a.json:
        print(json.dumps(r))
        return
    print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
                    if not isinstance(v, (dict, list))))
    width = max(len(c) for c in r["classes"])
    print(f"{'class':>{width}}  share   target" + ("  recall" if "recall_per_class" in r else ""))
    for i, c in enumerate(r["classes"]):
        recall = f"  {r['recall_per_class'][i]:.3f}" if "recall_per_class" in r else ""
        print(f"{c:>{width}}  {r['shares'][i]:.4f}  {r['target'][i]:.4f}{recall}")
    print(f"judge accuracy {r['judge_accuracy']:.4f} on real labelled images; confusion matrix (rows: true, "
          "columns: the judge's):")
    for c, row in zip(r["classes"], r["judge_confusion"]):
        print(f"{c:>{width}}  " + " ".join(f"{v:5d}" for v in row))


def _kind(ckpt: str) -> str:
    """What the checkpoint's family makes (genforge/families.py: text, image, label, ...)."""
    from genforge import checkpoint as ckpt_io

    return ckpt_io.peek(ckpt)[2].kind


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
    images = model.generate(a.prompt, n, guidance=a.guidance, negative_prompt=a.negative_prompt, seed=a.seed, **options)
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


def _interpolate(sub):
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


def _eval(sub):
    p = sub.add_parser("eval", help="loss, perplexity and bits per char/byte of a checkpoint; image metrics")
    p.add_argument("ckpt", help="checkpoint directory, or a run directory (uses its latest)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--data", help="prepared data directory (default: the data the checkpoint trained on)")
    g.add_argument("--file", help="a text file")
    p.add_argument("--split", default="val", help="the split of --data (or of the checkpoint's data): train or val")
    p.add_argument("--errors", choices=["strict", "replace"], default="strict",
                   help="--file with invalid UTF-8: an error (strict) or substitute U+FFFD (replace)")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, ...; images: cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--metrics", help="images: some of fid,kid,pr,coverage,nll (default: nll for a VAE, with "
                   "fid,kid,pr,coverage too when a classifier is known; fid,kid,pr,coverage for a GAN); text to "
                   "image: some of geneval,clipscore,fid,kid (default: geneval, and clipscore,fid with --clip); a GPT on JSB "
                   "Chorales: jsb_nll (NLL per frame, e.g. with --split test); bias: output bias (docs/bias.md; a text model needs --spec)")
    p.add_argument("--classifier", help="images: classifier checkpoint whose features the metrics use")
    p.add_argument("--num-samples", type=int, default=2000, help="images: generated (and real) images compared")
    p.add_argument("--iwae-k", type=int, default=100, help="images: importance samples of the VAE NLL bound")
    p.add_argument("--clip", help="text to image: a clip checkpoint for clipscore and fid (genforge train clip/scenes)")
    p.add_argument("--judge", help="text to image: a scene-judge checkpoint for geneval and bias (default: the "
                   "cached one, trained on first use); images, --metrics bias: the classifier checkpoint that labels "
                   "the samples (genforge train classifier/mnist)")
    p.add_argument("--seed", type=int, default=0, help="text to image: seed of the held-out prompts and their images")
    p.add_argument("--sampling", choices=["plain", "conditional", "reject"], default="plain",
                   help="images, --metrics bias: how the samples are made: the model's own sampler, class-conditional "
                   "at the --balance shares, or rejection sampling by the judge toward them")
    p.add_argument("--balance", default="uniform", help="images, --sampling conditional/reject: the label shares "
                   "sampled at: uniform or a bias spec YAML")
    p.add_argument("--vocoder", help="speech: a vocoder checkpoint (default: the bundled one, else Griffin-Lim); "
                   "speech metrics: mcd,duration,discrim,rtf on --num-samples held-out sentences (default 20)")
    p.add_argument("--spec", help="--metrics bias: the bias spec YAML (attributes, templates, pairs; docs/bias.md)")
    p.add_argument("--baseline", metavar="CKPT", help="--metrics bias, text: the checkpoint before a mitigation, "
                   "measured the same way; prints both and the change (perplexity: the quality it cost); images: "
                   "sampled by its own sampler, FID the quality it cost")

    def run(a):
        from genforge.eval.perplexity import evaluate_checkpoint

        kind = _kind(a.ckpt)
        if kind == "speech":
            result = _eval_speech(a, p)
            print(json.dumps(result) if a.json else "  ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
            return
        if kind == "text" and a.metrics == "bias":
            result = _eval_text_bias(a, p, a.ckpt)
            if a.baseline:
                before = _eval_text_bias(a, p, a.baseline)
                print(json.dumps({"baseline": before, "model": result}) if a.json else _comparison(before, result))
                return
            print(json.dumps(result) if a.json else "  ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
                if not isinstance(v, (dict, list))))
            return
        if kind in ("image", "text_image") and a.metrics == "bias":
            return _eval_image_bias(a, p, kind)
        if kind == "music":
            result = _eval_music(a, p)
            print(json.dumps(result) if a.json else "  ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
            return
        if kind == "text_image":
            import genforge

            metrics = a.metrics.split(",") if a.metrics else ["geneval"] + (["clipscore", "fid"] if a.clip else [])
            n = 256 if a.num_samples == p.get_default("num_samples") else a.num_samples
            model = genforge.load(a.ckpt, device=a.device)
            result = model.evaluate([m.strip() for m in metrics], n, a.seed, a.clip, a.judge)
            print(json.dumps(result) if a.json else "  ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
            return
        if kind in ("image", "label"):
            from genforge.eval.image_eval import evaluate_images
            from genforge.eval.image_metrics import parse_metrics

            device = "cpu" if a.device == "auto" else a.device
            metrics = parse_metrics(a.metrics) if a.metrics is not None else None
            result = evaluate_images(a.ckpt, metrics, a.classifier, a.num_samples, a.iwae_k, device)
            print(json.dumps(result) if a.json else "  ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
            return

        if a.metrics == "jsb_nll":  # JSB Chorales' NLL per frame (genforge/eval/jsb_nll.py)
            from genforge.eval.jsb_nll import evaluate_jsb

            if a.file:
                raise GenforgeError("--metrics jsb_nll scores prepared JSB data (--data DIR), not --file")
            result = evaluate_jsb(a.ckpt, a.data, a.split, a.device)
        else:
            result = evaluate_checkpoint(a.ckpt, a.data, a.file, a.split, a.device, a.errors)
        if a.json:
            print(json.dumps(result))
        else:
            print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))

    p.set_defaults(func=run)


def _eval_music(a, parser) -> dict:
    """Novelty and pitch / rhythm histogram distances of a music checkpoint's samples against the
    pieces it trained on (genforge/eval/music.py)."""
    import genforge
    from genforge.data.music_sources import from_score, read_source
    from genforge.eval.music import METRICS, evaluate

    metrics = [m.strip() for m in a.metrics.split(",")] if a.metrics else list(METRICS)
    for m in metrics:
        if m not in METRICS:
            raise GenforgeError(f"--metrics {m}: a music model has {', '.join(METRICS)}")
    n = 100 if a.num_samples == parser.get_default("num_samples") else a.num_samples
    model = genforge.load(a.ckpt, device=a.device)
    data = model.config["run"]["data"]
    names = set(model.config["music"]["train_pieces"])
    read = read_source(data["source"], True, tuple(data["exclude"]), data["limit"], data["style"])
    train = [p.notes for p in read.pieces if p.name in names]
    samples = [s for k in range(0, n, 25) for s in model.generate(min(25, n - k), 1024, seed=a.seed + k)]
    notes = [from_score(s.score, "sample", "").notes for s in samples if s.notes]
    return {**evaluate(notes, train, metrics), "empty_samples": n - len(notes), "train_pieces": len(train)}


def _comparison(before: dict, after: dict, names: tuple[str, str] = ("baseline", "model")) -> str:
    """The scalar metrics both reports have, as a table: before, after, change."""
    rows = [(k, before[k], after[k]) for k in after if k in before and isinstance(after[k], (int, float))
            and isinstance(before[k], (int, float)) and not isinstance(after[k], bool)]
    width = max([len(k) for k, _, _ in rows] + [6])
    lines = [f"{'metric':<{width}}  {names[0]:>10}  {names[1]:>10}  {'change':>10}"]
    for k, b, v in rows:
        change = f"{100 * (v / b - 1):+9.2f}%" if k == "perplexity" and b else f"{v - b:+10.4f}"
        lines.append(f"{k:<{width}}  {b:10.4f}  {v:10.4f}  {change}")
    return "\n".join(lines)


def _eval_text_bias(a, parser, ckpt: str) -> dict:
    """Template gaps, pair preference and shares in samples of a language model
    (genforge/eval/bias_text.py), with its perplexity on its own held-out data where it has one."""
    import genforge
    from genforge.eval.bias_spec import load_spec
    from genforge.eval.bias_text import text_bias
    from genforge.eval.perplexity import evaluate_checkpoint

    if not a.spec:
        raise GenforgeError("--metrics bias: needs --spec bias.yaml (docs/bias.md)")
    spec = load_spec(a.spec)
    lm = genforge.load(ckpt, device=a.device)
    n = 20 if a.num_samples == parser.get_default("num_samples") else a.num_samples
    seed = [a.seed]

    def sample(prompt: str, k: int) -> list[str]:
        seed[0] += 1
        out = lm.generate(prompt, max_new_tokens=24, temperature=1.0, seed=seed[0], num_samples=k)
        return [out] if isinstance(out, str) else out

    result = text_bias(lm.model, lm.tokenizer, spec, sample, n)
    try:  # the quality the model has, beside its bias: perplexity on its held-out split (or --data/--file)
        result["perplexity"] = evaluate_checkpoint(ckpt, a.data, a.file, a.split, a.device, a.errors,
                                                   max_windows=200)["perplexity"]
    except GenforgeError as e:
        result["perplexity"] = f"n/a ({e})"
    return result


def _serve(sub):
    p = sub.add_parser("serve", help="OpenAI-compatible API, playground (/) and reviewer page (/review)")
    p.add_argument("ckpt", nargs="+", help="checkpoint or run directories, or NAME=CKPT to pick the model id")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--api-key", default=os.environ.get("GENFORGE_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1 (default: $GENFORGE_API_KEY, else none)")
    p.add_argument("--feedback-db", help="SQLite file of the reviewer page (turns /review on)")
    p.add_argument("--prompts", help="text file of prompts to review, one per line")
    p.add_argument("--pairs-per-prompt", type=int, default=1, help="pairs made from each prompt (default 1)")
    p.add_argument("--review-max-tokens", type=int, default=64, help="tokens of each output the reviewers rate")
    p.add_argument("--review-temperature", type=float, default=0.8, help="sampling temperature of those outputs")
    p.add_argument("--max-concurrent", type=int, default=4, help="generations at once; more get 429 (default 4)")
    p.add_argument("--max-tokens", type=int, default=512, help="largest max_tokens a request may ask (default 512)")
    p.add_argument("--max-body-bytes", type=int, default=1_000_000, help="largest request body; larger get 413")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds for a request's whole body to arrive; a stalled one gets 408")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, ...")
    p.add_argument("--reject-with", metavar="RM", help="a reward checkpoint: requests with reject_below redraw "
                   "completions it scores below that (docs/bias.md)")

    def run(a):
        import importlib.util

        missing = [m for m in ("fastapi", "uvicorn", "jinja2", "multipart") if importlib.util.find_spec(m) is None]
        if missing:
            raise GenforgeError(f"serving needs {', '.join(missing)}: pip install 'genforge[serve]'")
        from genforge.serve.limits import Limits
        from genforge.serve.review import ReviewConfig
        from genforge.serve.server import build_state, serve

        limits = Limits(max_body_bytes=a.max_body_bytes, max_concurrent=a.max_concurrent, max_tokens=a.max_tokens,
                        timeout_s=a.timeout, body_timeout_s=a.body_timeout)
        review = ReviewConfig(a.pairs_per_prompt, a.review_max_tokens, a.review_temperature)
        state = build_state(a.ckpt, limits, a.api_key, a.feedback_db, a.prompts, review, a.device, a.reject_with)
        serve(state, a.host, a.port)

    p.set_defaults(func=run)


def _reviewers(sub):
    p = sub.add_parser("reviewers", help="manage the reviewers of a feedback database")
    verbs = p.add_subparsers(dest="action", required=True)
    add = verbs.add_parser("add", help="create a reviewer and print their login token (shown once)")
    add.add_argument("name")
    add.add_argument("--db", required=True, help="feedback database (created when missing)")
    ls = verbs.add_parser("list", help="reviewers and their number of ratings")
    ls.add_argument("--db", required=True, help="feedback database")
    off = verbs.add_parser("disable", help="lock a reviewer out (their ratings stay)")
    off.add_argument("name")
    off.add_argument("--db", required=True, help="feedback database")

    def run(a):
        from genforge.align.feedback import open_db

        if a.action == "add":
            print(open_db(a.db).add_reviewer(a.name))
        elif a.action == "disable":
            open_db(a.db, must_exist=True).disable_reviewer(a.name)
        else:
            for name, n in open_db(a.db, must_exist=True).reviewers():
                print(f"{name}\t{n}")

    p.set_defaults(func=run)


def _feedback(sub):
    p = sub.add_parser("feedback", help="export or summarise the ratings of a feedback database")
    verbs = p.add_subparsers(dest="action", required=True)
    ex = verbs.add_parser("export", help="write preference pairs (TRL format: prompt, chosen, rejected) as jsonl")
    ex.add_argument("db")
    ex.add_argument("--out", required=True, help="the .jsonl file to write")
    st = verbs.add_parser("stats", help="counts, agreement between reviewers, win rates per model")
    st.add_argument("db")
    st.add_argument("--json", action="store_true", help="print one JSON object")

    def run(a):
        from genforge.align.feedback import open_db
        from genforge.align.preferences import export_preferences, feedback_stats, format_stats

        db = open_db(a.db, must_exist=True)
        if a.action == "export":
            print(f"{a.out}: {export_preferences(db, a.out)} preference pairs")
        else:
            stats = feedback_stats(db)
            print(json.dumps(stats) if a.json else format_stats(stats))

    p.set_defaults(func=run)


def _finetune_verbs(sub):
    """import, export, finetune, merge, chat: their parsers live with their code."""
    from genforge.finetune.cli import add_chat, add_finetune, add_merge
    from genforge.hf.cli import add_export, add_import

    for add in (add_import, add_export, add_finetune, add_merge, add_chat):
        add(sub)


def _align(sub):
    from genforge.align.cli import add_align  # ratings -> reward model -> DPO/PPO -> report

    add_align(sub)


if __name__ == "__main__":
    sys.exit(main())
