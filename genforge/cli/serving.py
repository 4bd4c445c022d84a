"""The `serve`, `reviewers` and `feedback` verbs, and the verbs whose parsers live with their code
(import, export, finetune, merge, chat, align)."""
from __future__ import annotations

import json
import os

from genforge.errors import GenforgeError


def add_serve(sub):
    p = sub.add_parser("serve", help="OpenAI-compatible API, playground (/) and reviewer page (/review)")
    p.add_argument("ckpt", nargs="+", help="checkpoint or run directories, or NAME=CKPT to pick the model id")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--api-key", default=os.environ.get("GENFORGE_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1 (default: $GENFORGE_API_KEY, else none)")
    p.add_argument("--feedback-db", help="SQLite file of the reviewer page (turns /review on)")
    p.add_argument("--prompts", help="text file of prompts to review, one per line")
    p.add_argument("--pairs-per-prompt", type=int, default=1, help="pairs made from each prompt (default 1)")
    p.add_argument("--review-max-tokens", type=int, default=64, help="tokens of each output the reviewers rate")
    p.add_argument("--review-temperature", type=float, default=0.8, help="sampling temperature of those outputs")
    p.add_argument("--max-concurrent", type=int, default=4, help="generations at once; more get 429 (default 4)")
    p.add_argument("--max-tokens", type=int, default=512, help="largest max_tokens a request may ask (default 512)")
    p.add_argument("--max-body-bytes", type=int, default=1_000_000, help="largest request body; larger get 413")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds for a request's whole body to arrive; a stalled one gets 408")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, ...")
    p.add_argument("--reject-with", metavar="RM", help="a reward checkpoint: requests with reject_below redraw "
                   "completions it scores below that (docs/bias.md)")
    p.add_argument("--clip", metavar="CKPT", help="a clip checkpoint: text-to-image requests with rerank N keep the "
                   "best of N candidates per image by it (genforge train clip/scenes; docs/serving.md)")

    def run(a):
        import importlib.util

        missing = [m for m in ("fastapi", "uvicorn", "jinja2", "multipart") if importlib.util.find_spec(m) is None]
        if missing:
            raise GenforgeError(f"serving needs {', '.join(missing)}: pip install 'genforge[serve]'")
        from genforge.serve.limits import Limits
        from genforge.serve.review import ReviewConfig
        from genforge.serve.server import build_state, serve

        limits = Limits(max_body_bytes=a.max_body_bytes, max_concurrent=a.max_concurrent, max_tokens=a.max_tokens,
                        timeout_s=a.timeout, body_timeout_s=a.body_timeout)
        review = ReviewConfig(a.pairs_per_prompt, a.review_max_tokens, a.review_temperature)
        state = build_state(a.ckpt, limits, a.api_key, a.feedback_db, a.prompts, review, a.device, a.reject_with, a.clip)
        serve(state, a.host, a.port)

    p.set_defaults(func=run)


def add_reviewers(sub):
    p = sub.add_parser("reviewers", help="manage the reviewers of a feedback database")
    verbs = p.add_subparsers(dest="action", required=True)
    add = verbs.add_parser("add", help="create a reviewer and print their login token (shown once)")
    add.add_argument("name")
    add.add_argument("--db", required=True, help="feedback database (created when missing)")
    ls = verbs.add_parser("list", help="reviewers and their number of ratings")
    ls.add_argument("--db", required=True, help="feedback database")
    off = verbs.add_parser("disable", help="lock a reviewer out (their ratings stay)")
    off.add_argument("name")
    off.add_argument("--db", required=True, help="feedback database")

    def run(a):
        from genforge.align.feedback import open_db

        if a.action == "add":
            print(open_db(a.db).add_reviewer(a.name))
        elif a.action == "disable":
            open_db(a.db, must_exist=True).disable_reviewer(a.name)
        else:
            for name, n in open_db(a.db, must_exist=True).reviewers():
                print(f"{name}\t{n}")

    p.set_defaults(func=run)


def add_feedback(sub):
    p = sub.add_parser("feedback", help="export or summarise the ratings of a feedback database")
    verbs = p.add_subparsers(dest="action", required=True)
    ex = verbs.add_parser("export", help="write preference pairs (TRL format: prompt, chosen, rejected) as jsonl")
    ex.add_argument("db")
    ex.add_argument("--out", required=True, help="the .jsonl file to write")
    st = verbs.add_parser("stats", help="counts, agreement between reviewers, win rates per model")
    st.add_argument("db")
    st.add_argument("--json", action="store_true", help="print one JSON object")

    def run(a):
        from genforge.align.feedback import open_db
        from genforge.align.preferences import export_preferences, feedback_stats, format_stats

        db = open_db(a.db, must_exist=True)
        if a.action == "export":
            print(f"{a.out}: {export_preferences(db, a.out)} preference pairs")
        else:
            stats = feedback_stats(db)
            print(json.dumps(stats) if a.json else format_stats(stats))

    p.set_defaults(func=run)


def add_package_verbs(sub):
    """import, export, finetune, merge, chat: their parsers live with their code."""
    from genforge.finetune.cli import add_chat, add_finetune, add_merge
    from genforge.hf.cli import add_export, add_import

    for add in (add_import, add_export, add_finetune, add_merge, add_chat):
        add(sub)


def add_align_verb(sub):
    from genforge.align.cli import add_align  # ratings -> reward model -> DPO/PPO -> report

    add_align(sub)

