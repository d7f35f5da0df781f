"""``python -m bupose.core`` runs the ``bupose`` CLI."""

from .cli import main

main()
