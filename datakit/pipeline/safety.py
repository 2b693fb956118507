"""Never touch what the build did not write: which files are ours, overlap checks, and --overwrite.

A split folder may hold only what a build writes: ``index.json``, the dataset card, shards and
their done markers, the source's extra files, and temporary files of those. ``--overwrite``
deletes exactly those and refuses, naming it, when anything else is there (a thesis, a source
image). An output inside an input root, or an input root inside the output, is refused before
anything is written or deleted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import InputError
from ..io.output import LocalOutput, Output
from ..io.urls import check_output, is_within
from ..shards.card import CARD_MARK, CARD_NAME
from ..shards.index import INDEX_NAME

MARKER_SUFFIX = ".stats.json"
_TMP = re.compile(r"\.tmp(-\d+)?$")


def shard_pattern(split: str) -> re.Pattern[str]:
    """``<split>-NNNNNN.tar`` and its marker, the names the writer gives a split's shards."""
    return re.compile(re.escape(split) + r"-\d{6}(\.tar|" + re.escape(MARKER_SUFFIX) + ")")


def is_temporary(name: str) -> bool:
    """A torn write of a killed run: ``x.tar.tmp`` or ``x.tmp-<pid>``."""
    return bool(_TMP.search(name))


def owned(name: str, split: str, extras: Iterable[str] = ()) -> bool:
    """True for the names a build of ``split`` writes (the card is checked by content separately)."""
    base = _TMP.sub("", name)
    return (base in (INDEX_NAME, CARD_NAME) or base in set(extras)
            or shard_pattern(split).fullmatch(base) is not None)


def check_overlap(out: Output, roots: Sequence[str]) -> None:
    """Refuse an output that is a file, or lies inside an input root or holds one (a local output
    only can overlap; symlinks are resolved)."""
    if not isinstance(out, LocalOutput):
        return
    check_output(out.root)
    for root in roots:
        if root and (is_within(out.root, root) or is_within(root, out.root)):
            raise InputError(f"--out {out.root} overlaps the input {root}: choose an output folder outside the dataset "
                             "(and not holding it)")


def _foreign(out: Output, split: str, names: list[str], extras: Iterable[str]) -> list[str]:
    found = [n for n in names if not owned(n, split, extras)]
    if CARD_NAME in names:
        card = out.read_bytes(split, CARD_NAME) or b""
        if CARD_MARK.encode() not in card:
            found.append(CARD_NAME)
    return sorted(found)


def prepare(out: Output, splits: Sequence[str], resume: bool, overwrite: bool, extras: Iterable[str] = ()) -> None:
    """Check the split folders before a build: refuse to mix with an existing output unless resuming
    or overwriting; with ``overwrite`` delete what a build wrote; always drop torn temporary files."""
    extras = tuple(extras)
    listing = {s: out.names(s) for s in splits}
    existing = [s for s in splits if listing[s]]
    if existing and not (resume or overwrite):
        raise InputError(f"{out.url} already holds {', '.join(existing)}; pass --resume to continue or --overwrite to rebuild")
    for split in splits:
        names = listing[split]
        foreign = _foreign(out, split, names, extras)
        if foreign and overwrite:
            raise InputError(f"--overwrite would delete {out.locate(split, foreign[0])}, which datakit did not write: "
                             "move it away or choose another --out")
        doomed = names if overwrite else [n for n in names if is_temporary(n)]
        for name in sorted(doomed, key=lambda n: not n.endswith(MARKER_SUFFIX)):  # markers first
            if name not in foreign:
                out.remove(split, name)


def stale_shards(names: Iterable[str], split: str, planned: set[str]) -> list[str]:
    """Shards and markers of ``split`` that the current plan no longer has (the inputs shrank)."""
    pattern = shard_pattern(split)
    out = []
    for name in names:
        if pattern.fullmatch(name) and Path(name).name.split(".")[0] not in planned:
            out.append(name)
    return sorted(out, key=lambda n: not n.endswith(MARKER_SUFFIX))
