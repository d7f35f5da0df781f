"""Integration tests: every package installed together (nox -s integration)."""
