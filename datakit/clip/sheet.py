"""Contact sheets: a PNG grid of a category's top images, each tile captioned with rank and score.

Each image is fitted into a square tile (aspect kept, centred on grey); an image that cannot be
read becomes a dark tile with its caption, so a sheet always has one tile per listed image.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

TILE = 160
CAPTION = 14
TITLE = 24
BG = (235, 235, 235)
MISSING = (60, 60, 60)


def _tile(data: bytes | None, size: int) -> Image.Image:
    """A square tile holding the image fitted inside (or a dark tile if it cannot be read)."""
    tile = Image.new("RGB", (size, size), BG)
    if data is None:
        tile.paste(MISSING, (0, 0, size, size))
        return tile
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            img.thumbnail((size, size), Image.Resampling.BICUBIC)
            tile.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        tile.paste(MISSING, (0, 0, size, size))
    return tile


def contact_sheet(images: Sequence[bytes | None], captions: Sequence[str], title: str = "",
                  cols: int = 0, tile: int = TILE) -> Image.Image:
    """One PNG-ready RGB image: ``title`` on top, then a grid of captioned tiles (row-major)."""
    n = len(images)
    cols = cols or max(1, min(n, math.ceil(math.sqrt(n))))
    rows = max(1, math.ceil(n / cols))
    cell_h = tile + CAPTION
    sheet = Image.new("RGB", (cols * tile, TITLE + rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((4, 4), title, fill=(0, 0, 0), font=font)
    for i, (data, caption) in enumerate(zip(images, captions)):
        x, y = (i % cols) * tile, TITLE + (i // cols) * cell_h
        sheet.paste(_tile(data, tile), (x, y))
        draw.text((x + 2, y + tile + 1), caption[: tile // 6], fill=(0, 0, 0), font=font)
    return sheet


def sheet_filename(label: int, category: str) -> str:
    """``003_traffic_light.png``: label order first, a file-system-safe name after."""
    safe = re.sub(r"[^A-Za-z0-9]+", "_", category).strip("_") or "category"
    return f"{label:03d}_{safe}.png"


def write_sheet(folder: Path, label: int, category: str, images: Sequence[bytes | None],
                captions: Sequence[str]) -> Path:
    """Write one category's sheet atomically; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / sheet_filename(label, category)
    tmp = path.with_name(path.name + ".tmp")
    contact_sheet(images, captions, f"{label}: {category}").save(tmp, format="PNG")
    tmp.replace(path)
    return path
