"""Every command README.md and docs/*.md show, run as written on tiny settings, so that the
documents cannot drift from the CLI.

Each document's fenced ```bash blocks are read command by command (continued lines joined,
comments dropped, `a && b` split); every one must be listed in COMMANDS (tests/doc_commands_table.py) with how it runs here:

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
from pathlib import Path

import numpy as np
import pytest
from doc_commands_table import COMMANDS, NUMBERS, SKETCHES, SUBSTITUTE, Parse, Run, Skip

from genforge import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


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


def _audio_judge(box: Path, quickstart: Path) -> None:
    """audio_judge/: a tiny audio judge for --metrics fad (the cached one trains for minutes)."""
    from fad_helpers import tiny_judge

    tiny_judge(box / "audio_judge")


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
    "docs/music.md": [_jsb_file, _audio_judge],
    "docs/bias.md": [_bias_files, _reference],
    "docs/speech.md": [_speech_lines],
}


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
