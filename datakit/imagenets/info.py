"""``datakit info imagenets``: a subset's class table, split sizes and cross-subset overlaps.

Images keep their class across subsets but not always their split: some test images of a smaller
subset are validation images of a larger one, so tuning on that validation set touches the other
subset's test set. The overlaps are computed from the lists, never hard-coded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import permutations

from .lists import PUBLISHED, SUBSETS, load_lists

EVAL_SPLITS = ("validation", "test")


@dataclass(frozen=True)
class Overlap:
    """``names`` are in ``split`` of ImageNetS``subset`` and in ``other_split`` of ``other``."""

    subset: int
    split: str
    other: int
    other_split: str
    names: tuple[str, ...]

    def sentence(self) -> str:
        """The overlap and its consequence in one line."""
        n = len(self.names)
        return (f"{n} ImageNetS{self.subset} {self.split} image{'s' if n != 1 else ''} "
                f"{'are' if n != 1 else 'is'} ImageNetS{self.other} {self.other_split}: "
                f"tuning on S{self.other if self.other_split == 'validation' else self.subset} validation "
                f"touches S{self.subset if self.split == 'test' else self.other} test")


@dataclass(frozen=True)
class ClassRow:
    """One class of the table with its image counts."""

    id: int
    wnid: str
    name: str
    counts: tuple[int, int, int]  # train-semi, validation, test images of the class


@dataclass(frozen=True)
class SubsetInfo:
    """Everything ``datakit info imagenets`` prints."""

    subset: int
    published: dict[str, int]
    rows: tuple[ClassRow, ...]
    overlaps: tuple[Overlap, ...]


@lru_cache(maxsize=None)
def cross_overlaps() -> tuple[Overlap, ...]:
    """Every (subset, split) pair that shares images with another subset's other split."""
    names = {(n, s): {e.name for e in getattr(load_lists(n), s)} for n in SUBSETS for s in EVAL_SPLITS}
    found = []
    for (a, sa), (b, sb) in permutations(names, 2):
        if a < b and sa != sb:
            common = names[(a, sa)] & names[(b, sb)]
            if common:
                found.append(Overlap(a, sa, b, sb, tuple(sorted(common))))
    return tuple(found)


def subset_info(subset: int) -> SubsetInfo:
    """Class rows, published counts and the overlaps that involve this subset."""
    lists = load_lists(subset)
    per = {s: Counter(e.wnid for e in entries) for s, entries in
           (("train-semi", lists.semi), ("validation", lists.validation), ("test", lists.test))}
    rows = tuple(ClassRow(i, w, name, (per["train-semi"][w], per["validation"][w], per["test"][w]))
                 for i, (w, name) in enumerate(zip(lists.wnids, lists.names), 1))
    overlaps = tuple(o for o in cross_overlaps() if subset in (o.subset, o.other))
    return SubsetInfo(subset, dict(PUBLISHED[subset]), rows, overlaps)


def format_info(info: SubsetInfo, classes: bool = True) -> str:
    """Plain text for the CLI."""
    lines = [f"ImageNetS{info.subset}: {len(info.rows)} classes + other (id 0); ignore id 1000",
             "published images: " + ", ".join(f"{k} {v:,}" for k, v in info.published.items())]
    if classes:
        lines.append("")
        lines.append(f"{'id':>4}  {'wnid':<9}  {'semi':>4} {'val':>4} {'test':>4}  name")
        lines.append(f"{0:>4}  {'-':<9}  {'':>4} {'':>4} {'':>4}  other (not one of the subset's classes)")
        for r in info.rows:
            lines.append(f"{r.id:>4}  {r.wnid:<9}  {r.counts[0]:>4} {r.counts[1]:>4} {r.counts[2]:>4}  {r.name}")
        lines.append(f"{1000:>4}  {'-':<9}  {'':>4} {'':>4} {'':>4}  ignore (excluded from metrics and losses)")
    lines.append("")
    if not info.overlaps:
        lines.append("cross-subset overlaps: none")
    else:
        lines.append("cross-subset overlaps (same image, different split):")
        for o in info.overlaps:
            shown = ", ".join(n.rsplit(".", 1)[0] for n in o.names[:5]) + (", ..." if len(o.names) > 5 else "")
            lines.append(f"  {o.sentence()} ({shown})")
    return "\n".join(lines)
