"""Run an export: one task per shard, resumable through per-shard done markers, then the manifest.

A shard's files are written one by one (each atomically); when they are all there, a marker
``.datakit-export/<layout>/<dataset>/<split>/<shard>.json`` records the shard's sha256, the layout
fingerprint and every file with its size. A rerun skips shards whose marker matches and whose files
are all present with those sizes, and redoes the rest (files already holding the right bytes are
kept). ``datakit-export.json`` at the top of ``--out`` says what was exported and how to read it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

from ..errors import CorruptShardError, InputError
from ..jobs import run_local, values
from ..io import check_output, is_url
from ..io.atomic import json_bytes
from ..progress import ProgressBar
from ..shards.index import ShardEntry, SplitIndex, find_indexes
from ..shards.members import decode_sample
from ..shards.reader import iter_split
from .layouts import SplitLayout, encode_label, plan_split
from .paths import Writer, key_parts, safe_component

MANIFEST = "datakit-export.json"
MARKERS = ".datakit-export"
KIND = "datakit-export-v1"


@dataclass(frozen=True)
class ExportOptions:
    layout: str = "mmseg"
    overwrite: bool = False
    workers: int = 1
    progress: bool = True
    splits: tuple[str, ...] = ()     # empty: every split found at the path


@dataclass
class SplitExport:
    name: str
    samples: int = 0
    files: int = 0
    written: int = 0
    kept: int = 0
    replaced: int = 0
    skipped_shards: int = 0
    layout: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportReport:
    layout: str
    out: Path
    splits: list[SplitExport] = field(default_factory=list)


@dataclass(frozen=True)
class ExportJob:
    """Everything one shard task needs (picklable: it travels to pool workers)."""

    index: SplitIndex
    plan: SplitLayout
    out: str
    overwrite: bool

    def marker(self, entry: ShardEntry) -> str:
        name = Path(entry.url).name
        safe_component(name, "shard")
        return f"{MARKERS}/{self.plan.layout}/{safe_component(self.plan.dataset, 'dataset')}/" \
               f"{safe_component(self.plan.split, 'split')}/{name}.json"


def sample_files(job: ExportJob, raw: dict[str, Any], where: str,
                 folders: dict[int, str] | None = None) -> list[tuple[str, bytes]]:
    """(relative path, bytes) of every file one sample becomes in the layout (``folders``: class id -> folder)."""
    plan, key = job.plan, raw["__key__"]
    parts = key_parts(key, where)
    if "jpg" not in raw:
        raise CorruptShardError(f"{where}: sample {key!r} has no jpg member")
    image_rel = "/".join(parts)
    folder = plan.image_folder
    if plan.class_folders:
        labels = decode_sample(raw, where, keep=frozenset({"cls"}))
        cid = int(labels["cls"])
        cls_folder = (folders if folders is not None else plan.folders()).get(cid)
        if cls_folder is None:
            raise CorruptShardError(f"{where}: sample {key!r} has class {cid}, which is not in the class table")
        folder = f"{folder}/{cls_folder}"
        if len(parts) > 1 and parts[0] == cls_folder:  # keys like "<wnid>/<stem>" already name the class folder
            image_rel = "/".join(parts[1:])
    files = [(f"{folder}/{image_rel}{plan.image_suffix}", bytes(raw["jpg"]))]  # the stored JPEG, byte for byte
    if plan.masks:
        labels = decode_sample(raw, where, keep=frozenset(m.member for m in plan.masks))
        for m in plan.masks:
            if m.member not in labels:
                raise CorruptShardError(f"{where}: sample {key!r} has no {m.member} member")
            files.append((f"{m.folder}/{image_rel}{m.suffix}", encode_label(labels[m.member], m, f"{where}: {key}")))
    return files


def _marker_ok(writer: Writer, job: ExportJob, entry: ShardEntry) -> bool:
    path = writer.root / job.marker(entry)
    try:
        marker = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("sha256") != entry.sha256 or marker.get("layout") != job.plan.fingerprint():
        return False
    files = marker.get("files")
    if not isinstance(files, dict):
        return False
    for rel, size in files.items():
        try:
            key_parts(rel, str(path))
        except InputError:
            return False
        target = writer.root / rel
        if not target.is_file() or target.is_symlink() or target.stat().st_size != size:
            return False
    return True


def export_shard(job: ExportJob, entry: ShardEntry, progress: Callable[[int], None]) -> dict[str, int]:
    """Write one shard's files (or skip it when its marker proves they are there); returns counts."""
    writer = Writer(Path(job.out), job.overwrite)
    if _marker_ok(writer, job, entry):
        progress(entry.nsamples)
        return {"samples": entry.nsamples, "files": 0, "written": 0, "kept": 0, "replaced": 0, "skipped": 1}
    sizes: dict[str, int] = {}
    samples = 0
    folders = job.plan.folders()
    for raw in iter_split(replace(job.index, shards=(entry,)), decode=False):
        for rel, data in sample_files(job, raw, entry.url, folders):
            writer.put(rel, data)
            sizes[rel] = len(data)
        samples += 1
        progress(1)
    counts = {"samples": samples, "files": len(sizes), "written": writer.written, "kept": writer.kept,
              "replaced": writer.replaced, "skipped": 0}
    marker = {"shard": entry.url, "sha256": entry.sha256, "layout": job.plan.fingerprint(), "files": sizes}
    writer.overwrite = True  # the marker is this export's own bookkeeping
    writer.put(job.marker(entry), json_bytes(marker))
    return counts


def read_manifest(writer: Writer) -> dict[str, Any]:
    """The current ``datakit-export.json`` (empty if none); a foreign file of that name is refused unless --overwrite."""
    path = writer.target(MANIFEST)
    if os.path.lexists(path):
        try:
            found = json.loads(path.read_bytes())
        except (OSError, ValueError):
            found = None
        if isinstance(found, dict) and found.get("kind") == KIND and isinstance(found.get("exports"), dict):
            return found
        if not writer.overwrite:
            raise InputError(f"export: {path} exists and is not a datakit export manifest (pass --overwrite to replace it)")
    return {"kind": KIND, "exports": {}}


def _manifest(writer: Writer, entry_name: str, value: dict[str, Any]) -> None:
    """Add this split to ``datakit-export.json``."""
    current = read_manifest(writer)
    current["exports"][entry_name] = value
    overwrite, writer.overwrite = writer.overwrite, True
    writer.put(MANIFEST, json_bytes(current))
    writer.overwrite = overwrite


def export_split(index: SplitIndex, out: str | Path, opts: ExportOptions) -> SplitExport:
    plan = plan_split(opts.layout, index.spec)
    name = f"{index.spec.dataset}/{index.spec.split}"
    job = ExportJob(index, plan, str(Path(out).resolve()), opts.overwrite)
    for entry in index.shards:
        job.marker(entry)  # refuse a crafted shard or split name before anything is written
    report = SplitExport(name)
    with ProgressBar(index.total, f"export {opts.layout} {name}", enabled=opts.progress) as bar:
        counts = values(run_local(partial(export_shard, job), list(index.shards), opts.workers, bar.advance))
    for c in counts:
        report.samples += c["samples"]
        report.files += c["files"]
        report.written += c["written"]
        report.kept += c["kept"]
        report.replaced += c["replaced"]
        report.skipped_shards += c["skipped"]
    layout = asdict(plan)
    if plan.class_folders:
        names = index.spec.classes.names() if index.spec.classes else {}
        layout["class_folders"] = [{"id": cid, "folder": f, "name": names.get(cid, "")} for cid, f in plan.class_folders]
    layout["samples"] = index.total
    report.layout = layout
    _manifest(Writer(Path(out), opts.overwrite), f"{opts.layout}:{name}", layout)
    return report


def export(path: str, out: str | Path, opts: ExportOptions = ExportOptions()) -> ExportReport:
    """Export every split at ``path`` (or those in ``opts.splits``) into ``out`` in ``opts.layout``."""
    if is_url(str(out)):
        raise InputError(f"export: --out must be a local folder (the frameworks read files), not {out}")
    indexes = find_indexes(path)
    if opts.splits:
        indexes = [ix for ix in indexes if ix.spec.split in opts.splits]
        if not indexes:
            raise InputError(f"no split {', '.join(opts.splits)} under {path}")
    check_output(out, [ix.base for ix in indexes])  # the shards' folders hold only what a build wrote
    for ix in indexes:  # every split checked before any file is written
        plan_split(opts.layout, ix.spec)
    Path(out).mkdir(parents=True, exist_ok=True)
    read_manifest(Writer(Path(out), opts.overwrite))
    report = ExportReport(opts.layout, Path(out))
    for ix in indexes:
        report.splits.append(export_split(ix, out, opts))
    return report
