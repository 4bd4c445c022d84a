"""`genforge <verb>`: each verb parses its arguments and calls one function of the package.

The verbs' parsers live in this package's modules by what they do: data.py (prepare, audit),
training.py (quickstart, train), generate.py (generate, speak, vocode, interpolate), evaluate.py
(eval), serving.py (serve, reviewers, feedback, and the verbs of finetune/, hf/ and align/).
Errors genforge raises on purpose (GenforgeError) print as one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

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
    from genforge.cli import data, evaluate, generate, serving, training

    for add in (training.add_quickstart, data.add_prepare, data.add_audit, training.add_train, generate.add_generate,
                generate.add_speak, generate.add_vocode, evaluate.add_eval, generate.add_interpolate, serving.add_serve,
                serving.add_reviewers, serving.add_feedback, serving.add_package_verbs, serving.add_align_verb):
        add(sub)
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
