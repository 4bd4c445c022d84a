"""The `eval` verb: what each kind of checkpoint is measured by."""
from __future__ import annotations

import json

from genforge.cli._common import comparison, kind_of
from genforge.errors import GenforgeError


def add_eval(sub):
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
                   "Chorales: jsb_nll (NLL per frame, e.g. with --split test); bias: output bias (docs/bias.md; a text model needs --spec); "
                   "music: novelty,pitch,rhythm (default), fad; audio_lm: bits (default), fad; codec: reconstruction,bits,"
                   "codes,rtf (default: all)")
    p.add_argument("--classifier", help="images: classifier checkpoint whose features the metrics use")
    p.add_argument("--num-samples", type=int, default=2000, help="images: generated (and real) images compared; "
                   "music: pieces drawn (default 100); audio_lm: held-out clips bits measures (default 10), windows a "
                   "side fad compares (default 200); codec: held-out clips (default 10)")
    p.add_argument("--iwae-k", type=int, default=100, help="images: importance samples of the VAE NLL bound")
    p.add_argument("--clip", help="text to image: a clip checkpoint for clipscore and fid (genforge train clip/scenes), "
                   "and --rerank's scorer")
    p.add_argument("--rerank", type=int, default=1, help="text to image: keep the best of N candidates per prompt by "
                   "--clip's CLIPScore (default 1: none)")
    p.add_argument("--judge", help="text to image: a scene-judge checkpoint for geneval and bias (default: the "
                   "cached one, trained on first use); images, --metrics bias: the classifier checkpoint that labels "
                   "the samples (genforge train classifier/mnist); --metrics fad: an audio-judge checkpoint (default: "
                   "the cached one, trained on first use)")
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
        kind = kind_of(a.ckpt)
        if kind in ("image", "text_image") and a.metrics == "bias":
            return _eval_image_bias(a, p, kind)
        if kind == "text" and a.metrics == "bias" and a.baseline:
            before, after = _eval_text_bias(a, p, a.baseline), _eval_text_bias(a, p, a.ckpt)
            print(json.dumps({"baseline": before, "model": after}) if a.json else comparison(before, after))
            return
        result = _measure(a, p, kind)
        print(json.dumps(result) if a.json else "  ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
            if not isinstance(v, (dict, list))))

    p.set_defaults(func=run)


def _measure(a, p, kind: str) -> dict:
    """The metrics of a checkpoint of this kind, by the module that measures that kind."""
    if kind == "speech":
        return _eval_speech(a, p)
    if kind == "text" and a.metrics == "bias":
        return _eval_text_bias(a, p, a.ckpt)
    if kind == "music":
        return _eval_music(a, p)
    if kind in ("audio", "codec"):  # waveform models (genforge/cli/eval_audio.py)
        from genforge.cli.eval_audio import eval_audio, eval_codec

        return eval_audio(a, p) if kind == "audio" else eval_codec(a, p)
    if kind == "text_image":
        import genforge

        metrics = a.metrics.split(",") if a.metrics else ["geneval"] + (["clipscore", "fid"] if a.clip else [])
        n = 256 if a.num_samples == p.get_default("num_samples") else a.num_samples
        model = genforge.load(a.ckpt, device=a.device)
        return model.evaluate([m.strip() for m in metrics], n, a.seed, a.clip, a.judge, rerank=a.rerank)
    if kind in ("image", "label"):
        from genforge.eval.image_eval import evaluate_images
        from genforge.eval.image_metrics import parse_metrics

        device = "cpu" if a.device == "auto" else a.device
        metrics = parse_metrics(a.metrics) if a.metrics is not None else None
        return evaluate_images(a.ckpt, metrics, a.classifier, a.num_samples, a.iwae_k, device)
    if a.metrics == "jsb_nll":  # JSB Chorales' NLL per frame (genforge/eval/jsb_nll.py)
        from genforge.eval.jsb_nll import evaluate_jsb

        if a.file:
            raise GenforgeError("--metrics jsb_nll scores prepared JSB data (--data DIR), not --file")
        return evaluate_jsb(a.ckpt, a.data, a.split, a.device)
    from genforge.eval.perplexity import evaluate_checkpoint

    return evaluate_checkpoint(a.ckpt, a.data, a.file, a.split, a.device, a.errors)


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
        print(json.dumps({"baseline": before, "model": r}) if a.json else comparison(before, r))
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


def _eval_music(a, parser) -> dict:
    """Novelty and pitch / rhythm histogram distances of a music checkpoint's samples against the
    pieces it trained on (genforge/eval/music.py); fad: their Fréchet audio distance to the held-out
    pieces, both rendered (genforge/cli/eval_audio.py)."""
    import genforge
    from genforge.cli.eval_audio import chosen, music_fad
    from genforge.data.music_sources import from_score, read_source
    from genforge.eval.music import METRICS, evaluate

    metrics = chosen(a.metrics, (*METRICS, "fad"), METRICS, "a music model")
    n = 100 if a.num_samples == parser.get_default("num_samples") else a.num_samples
    model = genforge.load(a.ckpt, device=a.device)
    data = model.config["run"]["data"]
    names = set(model.config["music"]["train_pieces"])
    read = read_source(data["source"], True, tuple(data["exclude"]), data["limit"], data["style"])
    train = [p.notes for p in read.pieces if p.name in names]
    samples = [s for k in range(0, n, 25) for s in model.generate(min(25, n - k), 1024, seed=a.seed + k)]
    notes = [from_score(s.score, "sample", "").notes for s in samples if s.notes]
    result = {**evaluate(notes, train, [m for m in metrics if m != "fad"]), "empty_samples": n - len(notes),
              "train_pieces": len(train)}
    if "fad" in metrics:
        result.update(music_fad(samples, [p for p in read.pieces if p.name not in names], a.seed, a.judge))
    return result


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
