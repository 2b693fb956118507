"""CLI commands for this area (filled in by its owner); only parses and prints."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
