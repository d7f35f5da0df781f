"""``python -m bupose.core.engine train ...``: the bupose CLI, runnable as a module (for torchrun)."""

from __future__ import annotations

from bupose.core.cli import main

if __name__ == "__main__":
    main()
