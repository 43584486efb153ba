"""The docs teach only what runs: every code block of README.md and docs/ is run here.

A page's blocks run in order in one scratch folder (a later block may use what an earlier
one wrote), with this interpreter's environment on PATH:

- ```sh``` blocks run in bash, ```python``` blocks in this interpreter; both must exit 0.
- ```text``` blocks are output or layout shown to the reader, never commands.
- ``<!-- docs-test: COMMANDS -->`` just before a block runs COMMANDS instead of it: the small
  variant of a command that trains for an hour or needs root (same options, less data).
- ``<!-- docs-test: without torch -->`` runs a python block with torch, onnx and typer
  blocked, as on a device.
- ``<!-- docs-test: skip: REASON -->`` is allowed only for what ``.ci/run`` itself runs
  (``make demo``, ``make test``, ``make setup``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_blocked

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"(?:<!--\s*docs-test:(?P<directive>.*?)-->[ \t]*\n)?"
                   r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)
RUN_BY_CI = ("make demo", "make test", "make setup")
DEVICE_BLOCKED = ("torch", "onnx", "onnxscript", "typer")


def blocks(page: Path) -> list[tuple[str, str, str | None]]:
    """(language, body, directive or None) of each fenced block, in order."""
    return [(m["lang"], m["body"], m["directive"].strip() if m["directive"] else None)
            for m in BLOCK.finditer(page.read_text())]


def _env(tmp: Path) -> dict:
    env = dict(os.environ, EDGERF_CACHE=str(tmp / ".cache"), MPLBACKEND="Agg", COLUMNS="120",
               EDGERF_REPO=str(ROOT))     # directives may build inputs from the committed subsets
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _run(lang: str, code: str, directive: str | None, cwd: Path) -> subprocess.CompletedProcess:
    if lang == "python" and directive == "without torch":
        return run_blocked(f"import os; os.chdir({str(cwd)!r})\n" + code, DEVICE_BLOCKED)
    if lang == "python":
        return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=_env(cwd), capture_output=True,
                              text=True, timeout=900)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=_env(cwd),
                          capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_code_block_runs(page, tmp_path):
    found = blocks(page)
    for lang, body, directive in found:
        assert lang in ("sh", "python", "text"), f"{page.name}: a ```{lang}``` block (use sh, python or text)"
        if lang == "text":
            continue
        if directive and directive.startswith("skip:"):
            assert body.strip() in RUN_BY_CI, f"{page.name}: only {RUN_BY_CI} may be skipped, not {body!r}"
            continue
        code = body if directive in (None, "without torch") else directive
        r = _run(lang, code, directive, tmp_path)
        assert r.returncode == 0, \
            f"{page.name}: ```{lang}\n{code}```\nexit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"


def test_the_docs_show_commands_and_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) < 150
    runnable = [b for p in PAGES for b in blocks(p) if b[0] != "text"]
    assert len(runnable) >= 15
    # a block the pattern could not pair up would silently drop out of the test above
    for p in PAGES:
        fences = [ln for ln in p.read_text().splitlines() if ln.startswith("```")]
        assert len(fences) == 2 * len(blocks(p)), p.name


def test_the_docs_site_builds_strict(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(tmp_path / "site")], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "index.html").exists() and (tmp_path / "site" / "runtime" / "index.html").exists()
