"""``--format folder``: the official ImageNet-S directory layout, without the official script's defects.

``<out>/ImageNetS{N}/{train,train-semi,train-semi-segmentation,validation,validation-segmentation,test}``
plus ``train-full`` for 919. ``train`` (and ``train-full``) follow ``link``: symlinks (absolute
targets; whole class folders where no merge is involved, as upstream), hardlinks or copies (merged
classes included). ``train-semi``, ``validation`` and ``test`` are always copies, as upstream.
Every file is placed atomically and re-runs only fix what differs.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from ..errors import SampleError
from ..progress import ProgressBar
from ..sources.base import Record
from .inputs import MaskRef, is_image, read_mask_bytes
from .links import PLACERS, place_bytes, place_copy, place_dir_symlink, real_dir, same_bytes
from .lists import load_lists
from .params import ImageNetSParams, split_name
from .records import MASKED_SPLITS, ImageNetSImage, split_records
from .report import TRAIN_FULL

COPIED_SPLITS = ("train-semi", "validation", "test")


@dataclass
class FolderSplit:
    """What one split of the layout holds after the export (``samples`` = images in place)."""

    split: str
    samples: int = 0
    created: int = 0
    existing: int = 0
    masks: int = 0
    failures: dict[str, int] = field(default_factory=dict)


@dataclass
class FolderReport:
    """The folder export's result, shaped like a BuildReport for ``report``."""

    dataset: str
    out: str
    splits: list[FolderSplit]
    seconds: float = 0.0
    samples_written: int = 0


@dataclass(frozen=True)
class Job:
    """Fill one class folder: ``items`` are (source, file name); ``dir_target`` first tries a
    directory symlink; ``masks`` marks a job whose sources are MaskRefs."""

    split: str
    folder: str
    items: tuple[tuple[Any, str], ...]
    mode: str
    dir_target: str | None = None
    masks: bool = False
    count: int | None = None

    @property
    def size(self) -> int:
        """The number of images the job places (for progress and counts)."""
        return len(self.items) if self.count is None else self.count


@dataclass
class Outcome:
    """What one job did."""

    split: str
    created: int = 0
    existing: int = 0
    masks: int = 0
    failures: Counter = field(default_factory=Counter)


def _place_mask(ref: MaskRef, dst: str) -> bool:
    """Copy a mask file, or write a zip member's bytes (skipped when size and CRC already match)."""
    if ref.offset < 0:
        return place_copy(ref.path, dst)
    if same_bytes(dst, ref.usize, ref.crc):
        return False
    return place_bytes(read_mask_bytes(ref), dst)


def run_job(job: Job) -> Outcome:
    """Place every file of one folder; a bad mask is counted, not fatal."""
    out = Outcome(job.split)
    if job.dir_target is not None:
        os.makedirs(os.path.dirname(job.folder), exist_ok=True)
        made = place_dir_symlink(job.dir_target, job.folder)
        if made is not None:
            out.created, out.existing = (job.size, 0) if made else (0, job.size)
            return out
    real_dir(job.folder)
    for src, name in job.items:
        dst = os.path.join(job.folder, name)
        try:
            made = _place_mask(src, dst) if job.masks else PLACERS[job.mode](src, dst)
        except SampleError as err:
            out.failures[err.reason] += 1
            continue
        if job.masks:
            out.masks += 1
        elif made:
            out.created += 1
        else:
            out.existing += 1
    return out


def _by_class(records: list[Record[Any]]) -> dict[str, list[tuple[str, ImageNetSImage]]]:
    """(key, image) of the records present on disk, grouped by their ImageNet-S class."""
    groups: dict[str, list[tuple[str, ImageNetSImage]]] = defaultdict(list)
    for r in records:
        if isinstance(r.payload, ImageNetSImage):
            groups[r.payload.wnid].append((r.key, r.payload))
    return groups


def _split_jobs(p: ImageNetSParams, subset: int, split: str, root: str) -> tuple[list[Job], int]:
    """The jobs of one split (images, then masks) and its count of missing source images."""
    records = split_records(p, subset, split, sizes=False)
    name = split_name(subset, split, p.combined)
    mode = "copy" if split in COPIED_SPLITS else p.link
    merged = set(load_lists(subset).merges.values())
    jobs = []
    for wnid, group in sorted(_by_class(records).items()):
        items = tuple((img.path, os.path.basename(img.path)) for _, img in group)
        target = None
        if mode == "symlink" and split == "train" and wnid not in merged:
            target = os.path.join(p.imagenet, "train", wnid)
        jobs.append(Job(name, os.path.join(root, split, wnid), items, mode, target))
        if split in MASKED_SPLITS and p.annotations is not None:
            masks = tuple((img.mask, f"{key}.png") for key, img in group if img.mask is not None)
            jobs.append(Job(name, os.path.join(root, MASKED_SPLITS[split], wnid), masks, "copy", masks=True))
    return jobs, sum(1 for r in records if r.problem is not None)


def _train_full_jobs(p: ImageNetSParams, root: str) -> list[Job]:
    """S919 ``train-full``: all of ImageNet train; with symlinks one directory link (as upstream)."""
    name = split_name(919, TRAIN_FULL, p.combined)
    train = os.path.join(p.imagenet, "train")
    classes = sorted(e.name for e in os.scandir(train) if e.is_dir())
    files = {c: sorted(f.name for f in os.scandir(os.path.join(train, c)) if is_image(f.name) and f.is_file())
             for c in classes}
    dst = os.path.join(root, TRAIN_FULL)
    if p.link == "symlink" and not (os.path.isdir(dst) and not os.path.islink(dst)):
        return [Job(name, dst, (), "symlink", dir_target=train, count=sum(len(v) for v in files.values()))]
    real_dir(dst)
    return [Job(name, os.path.join(dst, c), tuple((os.path.join(train, c, n), n) for n in files[c]), p.link,
                dir_target=os.path.join(train, c) if p.link == "symlink" else None) for c in classes]


def _threads(opts: Any) -> int:
    """One thread per worker: file creation is metadata-bound, and more threads than that
    measured slower on a local ext4 disk (see benchmarks/bench_imagenets.py)."""
    return max(1, int(getattr(opts, "workers", 1) or 1))


def export_folder(p: ImageNetSParams, out: str, opts: Any) -> FolderReport:
    """Write (or bring up to date) ``<out>/ImageNetS{N}/`` for every requested subset and split."""
    t0 = time.perf_counter()
    jobs: list[Job] = []
    splits: dict[str, FolderSplit] = {}
    for subset in p.subsets:
        root = os.path.join(os.path.abspath(out), f"ImageNetS{subset}")
        for split in p.splits:
            split_jobs, missing = _split_jobs(p, subset, split, root)
            name = split_name(subset, split, p.combined)
            splits[name] = FolderSplit(name, failures={"missing_image": missing} if missing else {})
            jobs += split_jobs
            if subset == 919 and split == "train":
                full_jobs = _train_full_jobs(p, root)
                full = split_name(919, TRAIN_FULL, p.combined)
                splits[full] = FolderSplit(full)
                jobs += full_jobs
    total = sum(j.size for j in jobs)
    with ProgressBar(total, "imagenets folder", bool(getattr(opts, "progress", True))) as bar, \
            ThreadPoolExecutor(_threads(opts)) as pool:
        futures = {pool.submit(run_job, j): j.size for j in jobs}
        for fut in as_completed(futures):
            res = fut.result()
            s = splits[res.split]
            s.created += res.created
            s.existing += res.existing
            s.masks += res.masks
            for reason, n in res.failures.items():
                s.failures[reason] = s.failures.get(reason, 0) + n
            bar.advance(futures[fut])
    for s in splits.values():
        s.samples = s.created + s.existing
    written = sum(s.created for s in splits.values())
    return FolderReport("imagenets", os.path.abspath(out), list(splits.values()),
                        round(time.perf_counter() - t0, 3), written)
