"""Every workflow page in docs/ has commands that run as written.

A page marks such commands with a fenced block whose info string is ``bash test``. The blocks of one page
run in order, in a fresh folder, each ``bupose ...`` line through the real command line (in-process; a
line ending in ``\\`` continues on the next). ``# expect: PATH`` lines assert that a command before them
wrote PATH. Lines that are not ``bupose`` commands are an error: a tested block must be runnable as is.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from bupose.core.cli import build_cli
from bupose.core.plugins import get_registry

DOCS = Path(__file__).resolve().parents[1] / "docs"
WORKFLOW_PAGES = ("run.md", "video.md", "export.md", "evaluate.md", "training.md", "writing-a-plugin.md")
_BLOCK = re.compile(r"^```bash test[ \t]*\n(.*?)^```", re.S | re.M)


def docs_steps(text: str) -> list[tuple[str, list[str] | str]]:
    """``("run", argv)`` and ``("expect", path)`` steps of a page's ``bash test`` blocks, in order."""
    steps: list[tuple[str, list[str] | str]] = []
    for block in _BLOCK.findall(text):
        pending = ""
        for raw in block.splitlines():
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1].rstrip() + " "
                continue
            pending = ""
            if not line:
                continue
            if line.startswith("# expect:"):
                steps.append(("expect", line.split(":", 1)[1].strip()))
            elif line.startswith("#"):
                continue
            else:
                argv = shlex.split(line)
                if argv[0] != "bupose" or any(tok in (">", "|", "&&", ";") for tok in argv):
                    raise ValueError(f"a tested docs line must be one plain `bupose ...` command, got: {line}")
                steps.append(("run", argv[1:]))
        if pending:
            raise ValueError(f"a tested block ends in a line continuation: {pending}")
    return steps


def test_every_workflow_page_has_tested_commands() -> None:
    for page in WORKFLOW_PAGES:
        steps = docs_steps((DOCS / page).read_text())
        assert any(kind == "run" for kind, _ in steps), f"docs/{page} has no `bash test` block"


def test_parser_joins_continuations_and_rejects_shell() -> None:
    text = "```bash test\nbupose list \\\n   heads\n# expect: a/b\n```\n"
    assert docs_steps(text) == [("run", ["list", "heads"]), ("expect", "a/b")]
    with pytest.raises(ValueError, match=r"one plain `bupose \.\.\.` command"):
        docs_steps("```bash test\nbupose list > out.txt\n```\n")
    with pytest.raises(ValueError, match="one plain"):
        docs_steps("```bash test\npython -c 1\n```\n")


@pytest.mark.skipif("example" not in get_registry().names("heads"), reason="the pages use the example plugin")
@pytest.mark.parametrize("page", WORKFLOW_PAGES)
def test_docs_commands_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for kind, arg in docs_steps((DOCS / page).read_text()):
        if kind == "expect":
            assert Path(str(arg)).exists(), f"docs/{page}: expected {arg} to be written"
            continue
        assert isinstance(arg, list)
        res = runner.invoke(build_cli(), arg)
        assert res.exit_code == 0, f"docs/{page}: `bupose {shlex.join(arg)}` failed:\n{res.output}\n{res.exception!r}"
