"""What a new user meets first in the CLI: --version, help that shows every option's default, a
suggestion for a mistyped option, --no-progress on every long verb, exported files readable like
the rest (one seed per chat: tests/finetune/test_chat_seed.py)."""
from __future__ import annotations

import argparse
import dataclasses
import stat

import pytest

from genforge import cli
from genforge import quickstart as qs
from genforge.cli import main
from genforge.version import __version__

LONG_VERBS = ["quickstart", "prepare", "train", "finetune", "align"]


def verb_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every verb's parser ('reviewers add' for nested ones), from the real `genforge` parser."""
    found = {}

    def walk(parser, name):
        for verb, sub in cli.verbs(parser).items():
            found[f"{name} {verb}".strip()] = sub
            walk(sub, f"{name} {verb}")

    walk(cli.build_parser(), "")
    return found


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"genforge {__version__}"


def test_every_option_has_help_that_shows_its_default():
    parsers = verb_parsers()
    assert {"generate", "chat", "serve", "reviewers add", "export"} <= set(parsers)
    for verb, parser in parsers.items():
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            flag = action.option_strings[-1]
            assert action.help, f"genforge {verb} {flag}: no help text"
            if action.help is argparse.SUPPRESS or action.default in (None, False, [], argparse.SUPPRESS):
                continue
            shown = " ".join((action.help % {"default": action.default}).split()) if "%(default)" in action.help \
                else None
            assert "default" in action.help or f"(default {action.default})" in text, \
                f"genforge {verb} {flag}: help does not show its default {action.default!r}"
            assert shown is None or shown in text


def test_sampling_defaults_are_in_generate_and_chat_help(capsys):
    for verb, expected in (("generate", ["--temperature", "(default 0.8)", "--max-new-tokens", "(default 200)"]),
                           ("chat", ["--temperature", "(default 0.7)", "--top-p", "(default 0.9)"])):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for piece in expected:
            assert piece in text, (verb, piece)


@pytest.mark.parametrize("argv,suggestion", [
    (["generate", "ckpt", "--promt", "ROMEO:"], "did you mean --prompt?"),
    (["generate", "ckpt", "--temprature=0.5"], "did you mean --temperature?"),
    (["serve", "ckpt", "--feedback-bd", "f.db"], "did you mean --feedback-db?"),
    (["train", "lm/shakespeare_char", "--resmue"], "did you mean --resume?"),
])
def test_a_mistyped_option_gets_a_suggestion(capsys, argv, suggestion):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"genforge {argv[0]}: error: unrecognized arguments" in err and suggestion in err


def test_long_verbs_have_no_progress():
    parsers = verb_parsers()
    for verb in LONG_VERBS:
        assert "--no-progress" in parsers[verb]._option_string_actions, verb


def test_quickstart_no_progress_reaches_every_step(tmp_path, monkeypatch):
    calls = []
    for name, step in list(qs.STEPS.items()):
        fake = lambda out, minutes, progress, name=name: calls.append((name, progress)) or tmp_path  # noqa: E731
        monkeypatch.setitem(qs.STEPS, name, dataclasses.replace(step, run=fake))
    assert main(["quickstart", "--out", str(tmp_path), "--no-progress"]) == 0
    assert calls == [(name, False) for name in qs.STEPS]
    calls.clear()
    assert main(["quickstart", "--out", str(tmp_path)]) == 0
    assert calls == [(name, True) for name in qs.STEPS]


def test_export_writes_every_file_readable(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "hf"
    assert main(["export", "hf", str(tiny_ckpt), "--out", str(out)]) == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert "model.safetensors" in modes and set(modes.values()) == {0o644}, modes
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
