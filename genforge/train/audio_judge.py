"""Training the audio judge of the Fréchet audio distance (eval/audio_fad.py) through the one loop.

Its data needs no download and no labelling: music21's Bach chorales and O'Neill's folk tunes
(data/music_sources.py) are cut into segments of SEGMENT windows at a random place, each segment
played twice by tinysoundfont with pretty-midi's General MIDI soundfont (data/synth.py) with two
of PROGRAMS, and every window is labelled from the score: the pitch classes of the notes sounding
in it for at least MIN_SOUNDING seconds, the program, and the style (objectives/audio_judge.py).
Pieces are held out by the hash data/chorale_audio.py holds chorales out by, so the judge never
trains on the held-out chorales of `builtin:chorales_audio` that a Fréchet distance compares with.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from genforge import checkpoint as ckpt_io
from genforge.config import TrainConfig
from genforge.data.chorale_audio import held_out
from genforge.data.image_batches import ImageBatches
from genforge.data.images import ImageSet
from genforge.data.music import PITCH_RANGE, to_score
from genforge.data.music_sources import TICKS, Piece, corpus_files, read_file
from genforge.data.synth import render
from genforge.errors import CheckpointError, DataError
from genforge.eval.audio_fad import (
    FRAMES,
    JUDGE_VERSION,
    MEL,
    SAMPLE_RATE,
    VALIDATION_FILE,
    WINDOW,
    AudioJudge,
    judge_dir,
    load_audio_judge,
    mel_pictures,
)
from genforge.models.classifier import Classifier, ClassifierConfig
from genforge.objectives.audio_judge import CHROMA, PROGRAMS, STYLES, AudioJudgeObjective, accuracies, head_counts
from genforge.train.loop import train

SEGMENT = 6  # windows per rendered segment
RENDERS = 2  # segments (each with another program) per piece
MIN_SOUNDING = 0.05  # seconds a note must sound in a window to count as one of its pitch classes
VAL_FRACTION = 0.2  # as builtin:chorales_audio's default split


def judge_pieces(chorales: int = 120, folk: int = 150) -> list[Piece]:
    """The first `chorales` readable Bach chorales (once each) and `folk` tunes of O'Neill's books,
    in corpus order, their style set (chorale / folk); unreadable ones are left out."""
    out: list[Piece] = []
    for folders, style, want in ((("bach",), "chorale", chorales), (("oneills1850",), "folk", folk)):
        got, seen = [], set()
        for file in corpus_files(folders) if want else []:
            if len(got) >= want:
                break
            if file.stem in seen:
                continue
            seen.add(file.stem)
            try:
                got += read_file(file, style).pieces
            except DataError:
                continue  # e.g. bwv277's repeats: data/chorale_audio.py names it when it renders the chorales
        out += [dataclasses.replace(p, style=style) for p in got[:want]]
    if not out:
        raise DataError("the audio judge: no readable piece in music21's corpus")
    return out


def window_chroma(notes: np.ndarray, tempo: float, n: int) -> np.ndarray:
    """(n, 12) 0/1: the pitch classes of notes (N, 4) in ticks, at `tempo` quarters a minute,
    sounding for at least MIN_SOUNDING s in each of n consecutive windows from tick 0."""
    seconds = 60.0 / (tempo * TICKS)
    start, end = notes[:, 0] * seconds, (notes[:, 0] + notes[:, 1]) * seconds
    out = np.zeros((n, CHROMA), dtype=np.int64)
    width = WINDOW / SAMPLE_RATE
    for k in range(n):
        sounding = (np.minimum(end, (k + 1) * width) - np.maximum(start, k * width)) >= MIN_SOUNDING
        out[k, np.unique(notes[sounding, 2] % CHROMA)] = 1
    return out


def segment(piece: Piece, begin: int, ticks: int, program: int) -> Piece:
    """The notes of piece sounding in ticks [begin, begin + ticks), cut to it and moved to start at
    0, in the piano's range (what to_score plays), given to `program`."""
    notes = piece.notes
    lo, hi = np.maximum(notes[:, 0], begin), np.minimum(notes[:, 0] + notes[:, 1], begin + ticks)
    keep = (hi > lo) & (notes[:, 2] >= PITCH_RANGE[0]) & (notes[:, 2] < PITCH_RANGE[1])
    cut = np.stack([lo - begin, hi - lo, notes[:, 2], notes[:, 3]], axis=1)[keep]
    return Piece(piece.name, cut, piece.meter, piece.tempo, program, piece.style)


def judge_windows(pieces: list[Piece], seed: int = 0) -> ImageSet:
    """The judge's examples: mel pictures (M, 1, 64, 64) uint8 of the windows of RENDERS rendered
    segments per piece, labels (M, 14): 12 chroma bits, the program's index in PROGRAMS, the
    style's in STYLES. Windows with no note sounding are left out."""
    rng = np.random.default_rng(seed)
    programs = list(PROGRAMS)
    wins, labels = [], []
    for i, piece in enumerate(pieces):
        if len(piece.notes) == 0:
            continue
        ticks = round(SEGMENT * WINDOW / SAMPLE_RATE * piece.tempo * TICKS / 60)
        last = int((piece.notes[:, 0] + piece.notes[:, 1]).max())
        for r in range(RENDERS):
            p = (i + r) % len(programs)
            part = segment(piece, int(rng.integers(0, max(1, last - ticks + 1))), ticks, programs[p])
            if len(part.notes) == 0:
                continue
            wav = np.zeros(SEGMENT * WINDOW, dtype=np.float32)
            played = render(to_score(part), SAMPLE_RATE)[:len(wav)]
            wav[:len(played)] = played
            chroma = window_chroma(part.notes, part.tempo, SEGMENT)
            for k in np.flatnonzero(chroma.any(1)):
                wins.append(wav[k * WINDOW:(k + 1) * WINDOW])
                labels.append([*chroma[k], p, STYLES.index(piece.style)])
    if not wins:
        raise DataError("the audio judge: the pieces gave no window with a note sounding")
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B", *PROGRAMS.values(), *STYLES]
    return ImageSet(mel_pictures(np.stack(wins)), np.array(labels, dtype=np.int64), names)


def train_audio_judge(out: str | Path, chorales: int = 120, folk: int = 150, max_iters: int = 800, seed: int = 0,
                      batch_size: int = 64, width: int = 32, feature_dim: int = 64, progress: bool = False) -> Path:
    """Train the judge into out (a run directory) on the windows of judge_pieces(chorales, folk),
    the held-out pieces' windows validating it; write their accuracies beside the final
    checkpoint (judge.json); return that checkpoint."""
    pieces = judge_pieces(chorales, folk)
    val_pieces = [p for p in pieces if held_out(p.name, VAL_FRACTION)]
    train_pieces = [p for p in pieces if not held_out(p.name, VAL_FRACTION)]
    if not train_pieces or not val_pieces:
        raise DataError(f"the audio judge: {len(train_pieces)} training and {len(val_pieces)} held-out pieces; "
                        "it needs both (read more chorales)")
    train_set, val_set = judge_windows(train_pieces, seed), judge_windows(val_pieces, seed + 1)
    torch.manual_seed(seed)
    model_cfg = ClassifierConfig(image_size=FRAMES, channels=1, num_classes=len(train_set.class_names), width=width,
                                 feature_dim=feature_dim, dropout=0.1)
    model = Classifier(model_cfg)
    cfg = TrainConfig(max_iters=max_iters, lr=3e-3, min_lr=1e-4, warmup_iters=min(50, max_iters // 10),
                      weight_decay=0.01, eval_interval=max_iters, eval_iters=10, log_interval=100, keep_checkpoints=1,
                      device="cpu", dtype="float32", seed=seed, out_dir=str(out))
    meta = {"version": JUDGE_VERSION, "programs": list(PROGRAMS.values()), "program_numbers": list(PROGRAMS),
            "styles": list(STYLES), "mel": MEL.to_dict(), "chorales": chorales, "folk": folk}
    config = {"family": "classifier", "model": dataclasses.asdict(model_cfg), "tokenizer": None,
              "data": {"source": f"rendered chorales and folk tunes ({JUDGE_VERSION})",
                       "class_names": train_set.class_names, "train_images": len(train_set),
                       "val_images": len(val_set), "audio_judge": meta}}
    batches = ImageBatches(train_set, val_set, min(batch_size, len(train_set)), seed)
    final = train(AudioJudgeObjective(model, len(PROGRAMS)), batches, cfg, Path(out), config=config,
                  progress=progress)
    validation = {**held_out_accuracy(model.eval(), val_set), "windows": len(val_set), "pieces": len(val_pieces)}
    (final / VALIDATION_FILE).write_text(json.dumps(validation, indent=1))
    return final


@torch.no_grad()
def held_out_accuracy(model: Classifier, val: ImageSet, batch: int = 256) -> dict[str, float]:
    """chroma_f1, program_acc and style_acc of the judge on every window of val."""
    totals: dict[str, int] = {}
    for i in range(0, len(val), batch):
        x = torch.from_numpy(val.images[i:i + batch]).float().div_(255)
        counts = head_counts(model(x), torch.from_numpy(val.labels[i:i + batch]), len(PROGRAMS))
        totals = {k: totals.get(k, 0) + v for k, v in counts.items()}
    return accuracies(totals)


def audio_judge(ckpt: str | Path | None = None, device: str | torch.device = "cpu") -> AudioJudge:
    """The audio judge: of checkpoint ckpt when given, else the cached one (eval.audio_fad.judge_dir()),
    trained there first when there is none yet (a few CPU minutes, once)."""
    from genforge.train.judge import _train_cached

    if ckpt is None:
        try:
            ckpt_io.resolve(judge_dir())
        except CheckpointError:  # none yet, or a training that did not finish
            print(f"genforge: training the audio judge of --metrics fad into {judge_dir()} (first use: a few CPU "
                  "minutes)", file=sys.stderr, flush=True)
            _train_cached(judge_dir(), train_audio_judge)
    return load_audio_judge(ckpt, device)
