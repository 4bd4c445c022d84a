"""The user documents: README.md stays a short front page with true links, and docs/ builds with
`mkdocs build --strict` (a broken link or anchor fails the build)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 300  # four modalities, a tour section each
# development history belongs in commit messages, not in documents
HISTORY_PHRASES = ["session", "tried and dropped", "sweep"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_is_short():
    n = len(readme_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; keep it <= {MAX_README_LINES} and move detail to docs/"


def test_readme_points_nowhere_outside_the_repo():
    assert "../shared" not in readme_text(), "README.md links to ../shared, which users of the repo do not have"


@pytest.mark.parametrize("phrase", HISTORY_PHRASES)
def test_readme_has_no_history(phrase):
    lines = [line for line in readme_text().splitlines() if phrase in line.lower()]
    assert not lines, f"README.md mentions {phrase!r} (history goes in commit messages): {lines[0]!r}"


def test_readme_relative_links_exist():
    links = LINK.findall(readme_text())
    targets = [t for t in links if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]  # not URLs
    assert targets, "README.md links to no documents"
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_readme_keeps_the_ci_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = "./scripts/setup.sh && .venv/bin/python -m pytest -q tests"
    assert command in ci and command in readme_text(), "README.md and .ci/run must share the test command verbatim"


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install 'mkdocs>=1.5', part of the test extras)")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(tmp_path / "site")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, f"mkdocs build --strict failed:\n{out.stdout}\n{out.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
