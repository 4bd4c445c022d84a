"""espeak-ng through ctypes (the library the `espeakng-loader` wheel bundles): phonemes, and the
embedded teacher's speech with its alignment.

espeak_Initialize in synchronous mode with phoneme events: espeak_Synth calls our callback with
each chunk of 22.05 kHz 16-bit audio and the events inside it; a phoneme event carries the
mnemonic of the phoneme (`'oU`, `_:` for a pause) and its first sample. Consecutive starts give
every phoneme's duration for free, so the teacher's (text, audio, durations) need no aligner.
espeak_TextToPhonemes gives the IPA of a text (what `phonemize` shows a person).

The library holds one global synthesiser: every call takes the module's lock.
"""
from __future__ import annotations

import ctypes
import threading
import unicodedata
from dataclasses import dataclass

import numpy as np

from genforge.errors import DataError

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
CHARS_UTF8 = 1
PHONEMES_IPA = 0x02
EVENT_LIST_TERMINATED, EVENT_PHONEME = 0, 7
# the voices the teacher speaks in by default: two accents (espeak's "en" is British English), each also with a female and a male variant
DEFAULT_VOICES = ("en-us", "en", "en-us+f3", "en+m3")
# characters beyond letters, digits and spaces that espeak reads (as pauses or words) in English text
PUNCTUATION = set(".,;:!?'\"()-–—‘’“”…&%+/")


class _Event(ctypes.Structure):  # espeak_EVENT (speak_lib.h)
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Utterance:
    """What espeak said: audio (N,) float32 at `sample_rate`, its phonemes (mnemonics) and the
    sample each starts at (non-decreasing, starts[0] == 0: leading silence belongs to the first)."""
    audio: np.ndarray
    sample_rate: int
    phonemes: list[str]
    starts: np.ndarray  # (P,) int64

    def durations(self, n_frames: int, hop: int, rate: int | None = None) -> np.ndarray:
        """Frames per phoneme (P,) for `n_frames` frames of `hop` samples at `rate` (default the
        audio's own): boundaries rounded to the nearest frame, the first at 0 and the last at
        n_frames, so the durations sum to n_frames exactly."""
        scale = (rate or self.sample_rate) / self.sample_rate
        bounds = np.round(self.starts * scale / hop).astype(np.int64)
        bounds = np.append(np.minimum(np.maximum.accumulate(bounds), n_frames), n_frames)
        bounds[0] = 0
        return np.diff(bounds)


class _Espeak:
    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        self.sample_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                                      espeakng_loader.get_data_path().encode(), INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise DataError(f"espeak-ng: initialisation failed ({self.sample_rate}); reinstall espeakng-loader")
        self.callback = _CALLBACK(self._on_audio)  # kept alive: the library holds the pointer
        self.lib.espeak_SetSynthCallback(self.callback)
        self.voice = None
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            if events[i].type == EVENT_PHONEME:
                self.events.append((events[i].id.decode("ascii", "replace"), int(events[i].sample)))
            i += 1
        return 0  # go on

    def set_voice(self, voice: str) -> None:
        if voice != self.voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise DataError(f"espeak voice {voice!r}: unknown (e.g. {', '.join(DEFAULT_VOICES)}; "
                                "a language code, optionally +VARIANT such as +f3 or +m3)")
            self.voice = voice

    def synth(self, text: str, voice: str) -> Utterance:
        data = text.encode("utf-8")
        with self.lock:
            self.set_voice(voice)
            self.chunks, self.events = [], []
            status = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, CHARS_UTF8, None, None)
            chunks, events = self.chunks, self.events
        if status != 0:
            raise DataError(f"espeak-ng could not synthesise {text[:40]!r} (error {status})")
        audio = (np.concatenate(chunks).astype(np.float32) / 32768.0) if chunks else np.zeros(0, np.float32)
        phonemes = [name for name, _ in events]
        starts = np.array([s for _, s in events], dtype=np.int64)
        # the closing pause event starts where the audio ends: it has no frames; drop zero-length tails
        while len(phonemes) > 1 and starts[-1] >= len(audio):
            phonemes, starts = phonemes[:-1], starts[:-1]
        if not phonemes or not len(audio):
            raise DataError(f"espeak-ng said nothing for {text[:40]!r}")
        starts = np.minimum(np.maximum.accumulate(starts), len(audio))
        starts[0] = 0
        return Utterance(audio, self.sample_rate, phonemes, starts)

    def ipa(self, text: str, voice: str) -> str:
        with self.lock:
            self.set_voice(voice)
            buf = ctypes.c_char_p(text.encode("utf-8"))
            parts = []
            while buf.value:
                out = self.lib.espeak_TextToPhonemes(ctypes.byref(buf), CHARS_UTF8, PHONEMES_IPA)
                if out:
                    parts.append(out.decode("utf-8").strip())
        return " ".join(p for p in parts if p)


_ENGINE: _Espeak | None = None
_START = threading.Lock()


def engine() -> _Espeak:
    """The process's espeak-ng, initialised on first use. DataError where the wheel is missing."""
    global _ENGINE
    with _START:
        if _ENGINE is None:
            try:
                _ENGINE = _Espeak()
            except ImportError:
                raise DataError("speech needs espeak-ng: pip install espeakng-loader") from None
            except OSError as e:
                raise DataError(f"espeak-ng: cannot load the library ({e})") from None
    return _ENGINE


def check_text(text: str, where: str = "text") -> str:
    """text when espeak can read every character of it as English; DataError naming the first
    character it cannot (a letter of another script, an emoji, a control character)."""
    for ch in text:
        if ch.isspace() or ch.isdigit() or ch in PUNCTUATION:
            continue
        cat = unicodedata.category(ch)
        if cat.startswith("L") and "LATIN" in unicodedata.name(ch, ""):
            continue
        name = unicodedata.name(ch, f"U+{ord(ch):04X}")
        raise DataError(f"{where}: the phonemiser cannot read {ch!r} ({name}); use English text")
    if not any(ch.isalnum() for ch in text):
        raise DataError(f"{where}: nothing to say (no letters or digits)")
    return text


def synthesize(text: str, voice: str = DEFAULT_VOICES[0]) -> Utterance:
    """espeak-ng's speech of text in voice, with its phonemes and their start samples."""
    return engine().synth(check_text(text), voice)


def phonemes(text: str, voice: str = DEFAULT_VOICES[0]) -> list[str]:
    """The phoneme mnemonics espeak-ng speaks text with in voice (the acoustic model's input)."""
    return synthesize(text, voice).phonemes


def phonemize(text: str, voice: str = DEFAULT_VOICES[0]) -> str:
    """The IPA of text in voice's accent, phonemes separated by nothing, words by spaces."""
    return engine().ipa(check_text(text), voice)


def sample_rate() -> int:
    return engine().sample_rate
