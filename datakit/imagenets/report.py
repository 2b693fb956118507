"""The post-build table: images per split against the published ImageNet-S counts.

A train count that differs from the published one means the ImageNet copy is not the standard
ILSVRC2012 train set (or is incomplete); it is said so, not hidden.
"""

from __future__ import annotations

from typing import Any, Sequence

from .lists import IMAGENET_TRAIN_TOTAL, PUBLISHED
from .params import ImageNetSParams, parse_split_name
from .records import missing_train_folders

TRAIN_FULL = "train-full"


def _published(name: str, p: ImageNetSParams) -> tuple[int, str, int]:
    """(subset, base split, published count) of a split name, ``train-full`` included."""
    if name.endswith(TRAIN_FULL):
        return 919, TRAIN_FULL, IMAGENET_TRAIN_TOTAL
    subset, base = parse_split_name(name, p.subsets)
    return subset, base, PUBLISHED[subset][base]


def _note(base: str, built: int, published: int, failures: dict[str, int], folders: Sequence[str]) -> str:
    """Why a split's count is what it is: missing inputs, failures, a non-standard train set."""
    notes = []
    missing = failures.get("missing_image", 0)
    if missing:
        notes.append(f"{missing} source image(s) missing")
    other = {k: v for k, v in failures.items() if k != "missing_image" and v}
    if other:
        notes.append("failed: " + ", ".join(f"{k} {v}" for k, v in sorted(other.items())))
    if folders:
        notes.append(f"{len(folders)} class folder(s) missing, e.g. {folders[0]}")
    if built != published and base in ("train", TRAIN_FULL):
        notes.append(f"{built - published:+,d} vs published: non-standard or incomplete ImageNet train copy")
    elif built != published and not notes:
        notes.append(f"{built - published:+,d} vs published")
    return "; ".join(notes) if notes else "ok"


def count_rows(report: Any, p: ImageNetSParams) -> list[tuple[str, str, int, int, str]]:
    """(subset, split, built, published, note) per split of a build or folder-export report."""
    rows = []
    for s in report.splits:
        subset, base, published = _published(s.split, p)
        folders = missing_train_folders(p, subset) if base == "train" else []
        note = _note(base, s.samples, published, dict(s.failures), folders)
        if getattr(s, "masks", 0):
            note += f"; {s.masks:,} masks"
        rows.append((f"S{subset}", base, s.samples, published, note))
    return rows


def count_table(report: Any, p: ImageNetSParams) -> str:
    """A plain-text table for the CLI to print."""
    rows = [("subset", "split", "images", "published", "note")]
    rows += [(a, b, f"{c:,}", f"{d:,}", e) for a, b, c, d, e in count_rows(report, p)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]), r[3].rjust(widths[3]), r[4]]
        lines.append("  ".join(cells).rstrip())
    seconds = getattr(report, "seconds", 0.0) or 0.0
    written = getattr(report, "samples_written", None)
    if written is not None and seconds > 0:
        lines.append(f"{written:,} images written in {seconds:.1f} s ({written / seconds:,.0f}/s)")
    return "\n".join(lines)
