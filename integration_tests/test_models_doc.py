"""docs/models.md is the model zoo of the installed packages: every registered checkpoint's row, as
`bupose list weights --markdown` renders it now, is on the page."""

from __future__ import annotations

from pathlib import Path

from bupose.core.plugins import get_registry
from bupose.core.zoo import model_zoo, models_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"


def test_models_doc_lists_every_installed_checkpoint() -> None:
    page = DOC.read_text().splitlines()
    rows = [line for line in models_markdown().splitlines() if line.startswith("| ") and not line.startswith("| name")]
    assert rows, "no checkpoints registered"
    stale = [r.split(" | ")[0][2:] for r in rows if r not in page]
    assert not stale, (
        f"docs/models.md is out of date for {', '.join(stale)}; regenerate it with "
        "`bupose list weights --markdown > docs/models.md` (with every package installed)"
    )


def test_every_official_model_has_a_licence_status() -> None:
    """Licence status is what users choose by: every registered official model file states one."""
    missing = [e["name"] for e in model_zoo() if e["role"] == "model" and e["licence"] == "unknown"]
    assert not missing, f"official model files without a licence status: {missing}"
    assert {s.distribution for s in get_registry().components["weights"].values()}
