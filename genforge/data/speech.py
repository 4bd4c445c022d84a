"""Speech data for the acoustic model: (phonemes, durations in frames, log-mel frames, voice) per
utterance, from one of three sources (SpeechDataConfig.source):

  builtin:espeak  the embedded teacher: espeak-ng speaks sentences of the embedded Shakespeare
                  (and data.text's lines) in data.voices, each sentence in one voice, with its
                  phoneme alignment (genforge/data/espeak.py). Cached to disk as a dataset.
  an LJSpeech folder  metadata.csv (`id|text|normalized text`) and wavs/ID.wav
  a folder of pairs   NAME.wav + NAME.txt (its transcript)

Recorded speech has no alignment: espeak-ng speaks the transcript and its phoneme boundaries are
carried onto the recording by DTW between the two clips' MFCCs (the alignment a duration
predictor trains on). Held-out sentences are chosen by a hash of the text, so a held-out sentence
is never trained on in any voice, whatever the number of sentences.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genforge.config import cache_root
from genforge.data import espeak
from genforge.data.audio import read_audio, resample_audio
from genforge.data.text_norm import normalize
from genforge.errors import ConfigError, DataError
from genforge.nn.mel import LogMel, mel_config_for

TEACHER_VERSION = 1  # bump when the teacher's sentences or features change: the cache key holds it
MIN_CHARS, MAX_CHARS = 20, 140  # the teacher's sentences from the plays
SILENT_PEAK = 1e-3  # a clip whose loudest sample is below this (-60 dBFS) holds no speech
CLIPPED_FRACTION = 0.005  # a clip with this fraction of its samples at full scale is clipped


@dataclass
class SpeechDataConfig:
    source: str = "builtin:espeak"  # builtin:espeak | an LJSpeech folder | a folder of NAME.wav + NAME.txt
    voices: list[str] = field(default_factory=lambda: list(espeak.DEFAULT_VOICES))  # the teacher's espeak voices
    sentences: int = 3000  # builtin:espeak: sentences from the plays (each spoken in one voice)
    text: str = ""  # a text file: more sentences for the teacher, one a line
    accent: str = "en-us"  # the espeak voice whose phonemes transcribe recorded speech (LJSpeech, pairs)
    voice_name: str = ""  # recorded speech: the voice's name ("" the folder's name)
    minutes: float = 0.0  # train on only the first `minutes` of training audio (0: all), e.g. to fine-tune
    val_fraction: float = 0.05  # held-out sentences (by a hash of the text)
    batch_size: int = 16
    cache: str = ""  # where the teacher's dataset is cached ("": $GENFORGE_CACHE or ~/.cache/genforge, /speech)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size={self.batch_size} must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction={self.val_fraction} must be in [0, 1)")
        if self.sentences < 1:
            raise ConfigError(f"data.sentences={self.sentences} must be >= 1")
        if not self.voices:
            raise ConfigError("data.voices: name at least one espeak voice (e.g. en-us)")
        if self.minutes < 0:
            raise ConfigError(f"data.minutes={self.minutes} must be >= 0")


@dataclass
class Utterances:
    """Utterances held in flat arrays: utterance i's frames are mel[frame_at[i]:frame_at[i+1]] and its
    phonemes phonemes[i] with durations[phone_at[i]:phone_at[i+1]] (summing to its frame count)."""
    texts: list[str]
    phonemes: list[list[str]]
    voice: np.ndarray  # (U,) index into `voices`
    durations: np.ndarray  # (sum P,) int32
    mel: np.ndarray  # (sum T, n_mels) float16
    voices: list[str]

    def __post_init__(self):
        self.phone_at = np.concatenate([[0], np.cumsum([len(p) for p in self.phonemes])]).astype(np.int64)
        self.frame_at = np.concatenate([[0], np.cumsum([self.durations[a:b].sum() for a, b in
                                                        zip(self.phone_at[:-1], self.phone_at[1:])])]).astype(np.int64)
        if self.frame_at[-1] != len(self.mel):
            raise DataError(f"speech data: durations sum to {self.frame_at[-1]} frames but there are {len(self.mel)}")

    def __len__(self) -> int:
        return len(self.texts)

    def item(self, i: int) -> tuple[list[str], np.ndarray, np.ndarray, int]:
        """(phonemes, durations (P,), log-mel (T, n_mels) float32, voice index) of utterance i."""
        d = self.durations[self.phone_at[i]:self.phone_at[i + 1]]
        return self.phonemes[i], d, self.mel[self.frame_at[i]:self.frame_at[i + 1]].astype(np.float32), int(self.voice[i])

    def subset(self, rows) -> Utterances:
        rows = list(rows)
        return Utterances([self.texts[i] for i in rows], [self.phonemes[i] for i in rows], self.voice[rows],
                          np.concatenate([self.durations[self.phone_at[i]:self.phone_at[i + 1]] for i in rows] or [[]]).astype(np.int32),
                          np.concatenate([self.mel[self.frame_at[i]:self.frame_at[i + 1]] for i in rows]
                                         or [np.zeros((0, self.mel.shape[1]), np.float16)]),
                          self.voices)

    def seconds(self, hop: int, rate: int) -> float:
        return len(self.mel) * hop / rate


def held_out(text: str, fraction: float) -> bool:
    """Whether sentence `text` is held out: a stable hash of its normalised words, not its position."""
    key = " ".join(re.findall(r"[a-z']+", text.lower()))
    return zlib.crc32(key.encode()) % 10_000 < fraction * 10_000


def open_speech(cfg: SpeechDataConfig, sample_rate: int) -> tuple[Utterances, Utterances]:
    """(train, val) utterances of cfg.source with log-mel features at sample_rate. Raises DataError."""
    if cfg.source == "builtin:espeak":
        data = teacher_dataset(cfg, sample_rate)
    elif cfg.source.startswith("builtin:"):
        raise ConfigError(f"data.source={cfg.source!r}: unknown builtin; speech has builtin:espeak")
    else:
        data = recorded_dataset(cfg, sample_rate)
    val = [i for i, t in enumerate(data.texts) if held_out(t, cfg.val_fraction)]
    train = [i for i, t in enumerate(data.texts) if not held_out(t, cfg.val_fraction)]
    if not train:
        raise DataError(f"{cfg.source}: every sentence is held out (data.val_fraction={cfg.val_fraction})")
    if cfg.minutes:
        hop = mel_config_for(sample_rate).hop_length
        frames, keep = cfg.minutes * 60 * sample_rate / hop, []
        for i in train:
            if frames <= 0:
                break
            keep.append(i)
            frames -= data.frame_at[i + 1] - data.frame_at[i]
        train = keep
    return data.subset(train), data.subset(val or train[:1])


# ---- the embedded teacher


def shakespeare_sentences() -> list[str]:
    """Sentences of the embedded plays, MIN_CHARS to MAX_CHARS long, each once, in a fixed order."""
    from genforge.data.builtin import builtin_documents

    found: dict[str, None] = {}
    for _, play in builtin_documents("shakespeare"):
        for speech in play.split("\n\n"):
            lines = [line for line in speech.splitlines() if line and not line.endswith(":")]
            text = " ".join(lines)
            for sentence in re.split(r"(?<=[.!?])\s+", text):
                sentence = sentence.strip()
                if MIN_CHARS <= len(sentence) <= MAX_CHARS and re.search(r"[.!?]$", sentence) and _readable(sentence):
                    found.setdefault(sentence)
    sentences = sorted(found)
    np.random.default_rng(0).shuffle(sentences)
    return sentences


def _readable(text: str) -> bool:
    try:
        espeak.check_text(text)
    except DataError:
        return False
    return not re.search(r"[\[\]{}<>|]", text)


def teacher_sentences(cfg: SpeechDataConfig) -> list[str]:
    """The teacher's sentences: data.text's lines first (normalised), then the plays'."""
    own: list[str] = []
    if cfg.text:
        path = Path(cfg.text)
        if not path.is_file():
            raise DataError(f"{path}: no such text file (data.text)")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                own.append(espeak.check_text(normalize(line), f"{path}:{n}"))
    return (own + shakespeare_sentences())[:max(cfg.sentences, len(own))]


def teacher_dataset(cfg: SpeechDataConfig, sample_rate: int) -> Utterances:
    """The teacher's utterances (sentence i in voice i mod len(voices)), from the cache when there."""
    sentences = teacher_sentences(cfg)
    key = hashlib.sha256(json.dumps([TEACHER_VERSION, cfg.voices, sentences, sample_rate]).encode()).hexdigest()[:16]
    cache = Path(cfg.cache or cache_root() / "speech")
    file = cache / f"teacher-{key}.npz"
    if file.is_file():
        return _read_cache(file)
    for voice in cfg.voices:
        espeak.engine().set_voice(voice)  # an unknown voice is named before any synthesis
    feats = LogMel(mel_config_for(sample_rate))
    rows = [teach(text, cfg.voices[i % len(cfg.voices)], feats) for i, text in enumerate(sentences)]
    data = Utterances(sentences, [r[0] for r in rows], np.array([i % len(cfg.voices) for i in range(len(rows))]),
                      np.concatenate([r[1] for r in rows]).astype(np.int32),
                      np.concatenate([r[2] for r in rows]).astype(np.float16), list(cfg.voices))
    _write_cache(file, data)
    return data


def teach(text: str, voice: str, feats: LogMel) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(phonemes, durations in frames, log-mel (T, n_mels)) of espeak-ng speaking text in voice,
    at feats' sample rate."""
    said = espeak.synthesize(text, voice)
    wav = said.audio
    rate = feats.cfg.sample_rate
    if rate != said.sample_rate:
        wav = resample_audio(wav, said.sample_rate, rate)
    mel = feats(torch.from_numpy(wav)).T.numpy()  # (T, n_mels)
    return said.phonemes, said.durations(len(mel), feats.cfg.hop_length, rate), mel


def _write_cache(file: Path, data: Utterances) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f"{file.stem}.{os.getpid()}.tmp.npz")  # moved in whole: two writers never mix
    np.savez(tmp, mel=data.mel, durations=data.durations, voice=data.voice,
             meta=np.frombuffer(json.dumps({"texts": data.texts, "phonemes": data.phonemes,
                                            "voices": data.voices}).encode(), dtype=np.uint8))
    os.replace(tmp, file)


def _read_cache(file: Path) -> Utterances:
    with np.load(file) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        return Utterances(meta["texts"], meta["phonemes"], z["voice"], z["durations"], z["mel"], meta["voices"])


# ---- recorded speech


def recorded_pairs(root: Path) -> list[tuple[str, Path, str]]:
    """(id, wav path, transcript) of an LJSpeech folder or a folder of NAME.wav + NAME.txt pairs.
    DataError for a transcript without audio or audio without a transcript."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (data.source)")
    meta = root / "metadata.csv"
    if meta.is_file():
        pairs = []
        for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            cols = line.split("|")
            if len(cols) < 2 or not cols[0]:
                raise DataError(f"{meta}:{n}: expected `id|text|normalized text`")
            wav = root / "wavs" / f"{cols[0]}.wav"
            if not wav.is_file():
                raise DataError(f"{meta}:{n}: transcript {cols[0]!r} has no audio ({wav} is missing)")
            pairs.append((cols[0], wav, cols[2] if len(cols) > 2 and cols[2].strip() else cols[1]))
        return pairs
    texts = {p.stem: p for p in root.glob("*.txt")}
    wavs = {p.stem: p for p in root.glob("*.wav")}
    for stem in sorted(set(texts) ^ set(wavs)):
        if stem in texts:
            raise DataError(f"{texts[stem]}: transcript without audio ({stem}.wav is missing)")
        raise DataError(f"{wavs[stem]}: audio without a transcript ({stem}.txt is missing)")
    if not wavs:
        raise DataError(f"{root}: no metadata.csv and no NAME.wav + NAME.txt pairs")
    return [(s, wavs[s], texts[s].read_text(encoding="utf-8").strip()) for s in sorted(wavs)]


def check_clip(wav: np.ndarray, where: str) -> None:
    """DataError for a silent clip or a clipped one."""
    peak = float(np.abs(wav).max())
    if peak < SILENT_PEAK:
        raise DataError(f"{where}: silent clip (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS)")
    full = float((np.abs(wav) >= 0.999).mean())
    if full >= CLIPPED_FRACTION:
        raise DataError(f"{where}: clipped ({100 * full:.1f}% of samples at full scale); use an unclipped recording")


def recorded_dataset(cfg: SpeechDataConfig, sample_rate: int) -> Utterances:
    """Utterances of recorded speech, aligned to espeak-ng's phonemes of their transcripts."""
    root = Path(cfg.source)
    feats = LogMel(mel_config_for(sample_rate))
    texts, phonemes, durations, mels = [], [], [], []
    for ident, path, transcript in recorded_pairs(root):
        text = espeak.check_text(normalize(transcript), f"{path.with_suffix('.txt').name if path.parent == root else ident}")
        wav, _ = read_audio(path, sample_rate)
        check_clip(wav, str(path))
        mel = feats(torch.from_numpy(wav)).T.numpy()
        names, dur = align(text, cfg.accent, mel, feats)
        texts.append(text)
        phonemes.append(names)
        durations.append(dur)
        mels.append(mel)
    name = cfg.voice_name or root.resolve().name
    return Utterances(texts, phonemes, np.zeros(len(texts), np.int64), np.concatenate(durations).astype(np.int32),
                      np.concatenate(mels).astype(np.float16), [name])


def align(text: str, accent: str, mel: np.ndarray, feats: LogMel) -> tuple[list[str], np.ndarray]:
    """(phonemes, durations summing to len(mel)) of a recording of text: espeak-ng's boundaries
    carried onto the recording along the DTW path between the two clips' MFCCs."""
    import librosa

    names, teacher_d, teacher_mel = teach(text, accent, feats)
    a = librosa.feature.mfcc(S=teacher_mel.T, n_mfcc=20)[1:]  # c0 (loudness) differs between voices
    b = librosa.feature.mfcc(S=mel.T, n_mfcc=20)[1:]
    _, path = librosa.sequence.dtw(X=a, Y=b, metric="euclidean")
    path = path[::-1]  # (teacher frame, recording frame) pairs in order
    first = np.full(len(teacher_mel) + 1, len(mel), dtype=np.int64)  # first recording frame of each teacher frame
    for i, j in path:
        first[i] = min(first[i], j)
    bounds = np.concatenate([[0], np.cumsum(teacher_d)])
    mapped = first[np.minimum(bounds, len(teacher_mel))]
    mapped[0], mapped[-1] = 0, len(mel)
    return names, np.diff(np.maximum.accumulate(mapped))
