"""Example third-party bupose plugin (see docs/writing-a-plugin.md)."""
