"""Text to speech against the embedded teacher, on held-out sentences (never trained on, in any
voice), with Griffin-Lim and the neural vocoder side by side in one process.

    python bench/tts_quality.py --ckpt runs/tts_espeak [--vocoder runs/vocoder_espeak] [--n 40] [--threads 2]

The acoustic model of --ckpt speaks each held-out sentence in one of its teacher voices (in turn);
espeak-ng's audio of the same sentence in the same voice is the reference. Per vocoder (the
neural one of --vocoder, or bundled in the checkpoint; and Griffin-Lim, nn/mel.py, 32 iterations):
  MCD-DTW (eval/audio_metrics.py) of the spoken waveform against the reference, the mean over sentences;
  discrimination: the fraction of outputs nearer by DTW on log-mel to their own sentence's
  reference than to the other held-out sentences' references in the same voice;
  the real-time factor of the whole speak path (text -> normalised -> phonemes -> frames ->
  waveform), seconds of computing per second of audio, median of 3, the vocoders alternating
  A B A B on the same sentences, on --threads torch threads.
Duration error (predicted vs the teacher's phoneme durations, ms) does not depend on the vocoder.
Naturalness cannot be measured offline; this measures what can be.
Without a neural vocoder it runs Griffin-Lim alone and says so. The last line is
    mcd_db=... discrim=... rtf=... mcd_griffinlim_db=...
(mcd_db, discrim and rtf of the neural vocoder where there is one, else of Griffin-Lim).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge.cpu import isa
from genforge.eval.tts import evaluate_speech, heldout_sentences, teacher_voices
from genforge.sample.speech import SpeechModel, griffin_lim_vocoder, speak


def rtf_side_by_side(model, vocoders: dict, texts: list[str], voice: str, repeats: int) -> dict[str, float]:
    """{vocoder: median seconds per audio second of speak(...)}, the vocoders alternating."""
    seconds = {name: sum(len(speak(model, t, voice, 1.0, v)[0]) for t in texts) / model.config.sample_rate
               for name, v in vocoders.items()}
    times: dict[str, list[float]] = {name: [] for name in vocoders}
    for _ in range(repeats):
        for name, vocode in vocoders.items():
            t0 = time.perf_counter()
            for t in texts:
                speak(model, t, voice, 1.0, vocode)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(times[name]) / seconds[name] for name in vocoders}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, help="a trained speech checkpoint (genforge train tts/espeak)")
    p.add_argument("--vocoder", help="a vocoder checkpoint (genforge train vocoder/espeak); default: the bundled one")
    p.add_argument("--n", type=int, default=40, help="held-out sentences")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the real-time factor")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{isa.describe()}; torch threads {args.threads}", flush=True)
    speaker = SpeechModel.load(args.ckpt, "cpu", args.vocoder)
    model = speaker.model
    run = speaker.loaded_config.get("run") or {}
    print(f"checkpoint {speaker.path}: step {speaker.loaded_config.get('step')}, "
          f"{(speaker.loaded_config.get('data') or {}).get('train_seconds', '?')} s of training audio, "
          f"model {json.dumps({k: v for k, v in (run.get('model') or {}).items() if k.startswith(('n_', 'conv', 'ffn'))})}",
          flush=True)
    vocoders = {}
    if speaker.vocoder_name != "griffin-lim":
        vocoders["neural"] = speaker.vocoder()
    else:
        print("no neural vocoder (none bundled, no --vocoder): Griffin-Lim only", flush=True)
    vocoders["griffinlim"] = griffin_lim_vocoder(speaker.sample_rate)
    t0 = time.perf_counter()
    found = evaluate_speech(model, vocoders, ("mcd", "duration", "discrim"), args.n, val_fraction=speaker.val_fraction)
    print(f"evaluated {found['n']} held-out sentences in {time.perf_counter() - t0:.0f} s", flush=True)
    voice = model.config.voices[teacher_voices(model.config)[0]]
    texts = heldout_sentences(4, speaker.val_fraction)
    rtf = rtf_side_by_side(model, vocoders, texts, voice, args.repeats)
    first = next(iter(vocoders))
    for name in vocoders:
        mcd = found["mcd_db"] if name == first else found[f"mcd_{name}_db"]
        disc = found["discrim"] if name == first else found.get(f"discrim_{name}", float("nan"))
        print(f"{name:>10}: mcd_dtw {mcd:.2f} dB  discrim {disc:.3f}  rtf {rtf[name]:.4f} "
              f"({1 / rtf[name]:.1f}x faster than real time)")
    print(f"duration error {found['dur_err_ms']:.1f} ms per phoneme, utterance length error {100 * found['len_err']:.1f}%")
    if args.json:
        Path(args.json).write_text(json.dumps({**found, "rtf": rtf}, indent=1))
    gl_mcd = found["mcd_db"] if first == "griffinlim" else found["mcd_griffinlim_db"]
    print(f"mcd_db={found['mcd_db']:.2f} discrim={found['discrim']:.3f} rtf={rtf[first]:.4f} mcd_griffinlim_db={gl_mcd:.2f}")


if __name__ == "__main__":
    main()
