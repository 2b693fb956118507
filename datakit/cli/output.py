"""Terminal output for the commands: rich consoles and tables, imported on first use.

rich's console costs ~0.25 s to import; ``datakit --help`` must not pay it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=2)
def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


def table(*columns: str, title: str | None = None) -> Any:
    from rich.table import Table

    return Table(*columns, title=title)
