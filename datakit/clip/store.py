"""On-disk CLIP index: per-part ``.npy`` + ``.parquet`` + done marker, the plan, and the manifest.

Layout of an index folder::

    plan.json                      model identity + every part's input unit (written first)
    parts/part-000000.npy          float16 [rows, dim], L2-normalised
    parts/part-000000.parquet      key, source, path, wnid, part, row (row i = npy row i)
    parts/part-000000.json         done marker, written last: a part with a marker is whole
    table.parquet, manifest.json   written when every part is done (the index is then complete)

Parts go through the resumable-parts core (``jobs.parts``), like shards: the npy and parquet are
written atomically, then the done marker, sealed with its own digest and listing the files' sizes. A
part counts as done only when its marker is intact and its files have those sizes, so a killed run
or an edited marker never passes for a whole part.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..errors import InputError
from ..io import atomic_save_npy, atomic_write_parquet, open_output, read_json_file
from ..io import atomic_write_json
from ..jobs.parts import PartStore
from .model import describe, same_model

FORMAT = "datakit-clip-index"
FORMAT_VERSION = 1
PLAN, MANIFEST, TABLE, PARTS = "plan.json", "manifest.json", "table.parquet", "parts"
COLUMNS = ("key", "source", "path", "wnid", "part", "row")


def part_name(index: int) -> str:
    """File stem of part ``index``."""
    return f"part-{index:06d}"


def plan_fingerprint(units: Sequence[dict[str, Any]]) -> str:
    """Identifies the whole input: equal inputs (same files or shards, same part size) give equal prints."""
    h = hashlib.sha256()
    for unit in units:
        h.update(json.dumps(unit, sort_keys=True).encode())
    return h.hexdigest()[:20]


def make_plan(identity: dict[str, Any], sources: list[dict[str, Any]], units: list[dict[str, Any]],
              kind: str = "embed") -> dict[str, Any]:
    """The plan JSON of an index: model, sources and every part's unit."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "model": identity,
            "sources": sources, "fingerprint": plan_fingerprint(units), "parts": units}


def read_json_if_present(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, None when absent; invalid JSON is an InputError."""
    if not Path(path).exists():
        return None
    return read_json_file(path, "index file")


def check_plan(existing: dict[str, Any], plan: dict[str, Any], out: Path) -> None:
    """Refuse to continue an index made by another model or from other input."""
    if existing.get("format") != FORMAT:
        raise InputError(f"{out} holds something that is not a datakit CLIP index; choose another --out")
    if not same_model(existing["model"], plan["model"]):
        raise InputError(f"{out} was written by {describe(existing['model'])}; this run uses "
                         f"{describe(plan['model'])}: choose another --out or pass --overwrite")
    if existing["fingerprint"] != plan["fingerprint"]:
        raise InputError(f"{out} was planned from different input (files or part size changed since); "
                         "choose another --out or pass --overwrite")


def _part_table(columns: dict[str, list[Any]]) -> Any:
    import pyarrow as pa

    return pa.table({
        "key": pa.array(columns["key"], pa.string()),
        "source": pa.array(columns["source"], pa.string()),
        "path": pa.array(columns["path"], pa.string()),
        "wnid": pa.array(columns["wnid"], pa.string()),
        "part": pa.array(columns["part"], pa.int32()),
        "row": pa.array(columns["row"], pa.int32()),
    })


def part_store(out: Path) -> PartStore:
    """The parts of an index folder: ``parts/part-NNNNNN.json`` markers over their npy and parquet."""
    return PartStore(open_output(str(out)), PARTS, ".json")


@dataclass(frozen=True)
class PartRows:
    """What one finished part holds: embeddings and their row metadata, in the same order."""

    index: int
    embeddings: np.ndarray
    keys: list[str]
    sources: list[str]
    paths: list[str]
    wnids: list[str | None]


def write_part(out: Path, rows: PartRows, plan: dict[str, Any], failures: list[dict[str, str]],
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write a part's npy and parquet, then its sealed marker (the marker makes the part count as done)."""
    n = len(rows.keys)
    if rows.embeddings.shape[0] != n or rows.embeddings.dtype != np.float16:
        raise ValueError(f"part {rows.index}: {rows.embeddings.shape} {rows.embeddings.dtype} for {n} rows")
    parts = part_store(Path(out))
    folder = parts.output.staging(PARTS)
    name = part_name(rows.index)
    npy, parquet = f"{name}.npy", f"{name}.parquet"
    atomic_save_npy(folder / npy, rows.embeddings, fsync=True)
    atomic_write_parquet(folder / parquet, _part_table({
        "key": rows.keys, "source": rows.sources, "path": rows.paths, "wnid": rows.wnids,
        "part": [rows.index] * n, "row": list(range(n)),
    }), fsync=True)
    marker = {"part": rows.index, "rows": n, "model": plan["model"], "plan": plan["fingerprint"],
              "unit": plan["parts"][rows.index], "failures": failures[:1000], "failed": len(failures),
              "written_by": f"datakit {__version__}", **(extra or {}),
              "files": {npy: (folder / npy).stat().st_size, parquet: (folder / parquet).stat().st_size}}
    parts.commit(name, [npy, parquet], marker, fsync=True)
    return marker


def read_marker(folder: Path, index: int) -> dict[str, Any] | None:
    """A part's marker if the part is whole: an intact marker, and its npy and parquet at their sizes."""
    return part_store(Path(folder).parent).read(part_name(index))


def check_marker(marker: dict[str, Any], plan: dict[str, Any], where: str) -> None:
    """A finished part must come from this plan's model and input unit; anything else is refused."""
    if not same_model(marker["model"], plan["model"]):
        raise InputError(f"{where} was written by {describe(marker['model'])}, not {describe(plan['model'])}; "
                         "refusing to mix models in one index")
    if marker.get("plan") != plan["fingerprint"] or marker.get("unit") != plan["parts"][marker["part"]]:
        raise InputError(f"{where} belongs to a different input plan; refusing to mix it in")


def done_parts(out: Path, plan: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Markers of the finished parts of a plan (each checked against the plan)."""
    folder = Path(out) / PARTS
    done = {}
    names = [part_name(i) for i in range(len(plan["parts"]))]
    for i, (name, marker) in enumerate(part_store(Path(out)).scan(names)):
        if marker is not None:
            check_marker(marker, plan, str(folder / name))
            done[i] = marker
    return done


def finalize(out: Path, plan: dict[str, Any]) -> dict[str, Any] | None:
    """Write ``table.parquet`` and ``manifest.json`` once every part is done; None while parts are missing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    done = done_parts(out, plan)
    if len(done) < len(plan["parts"]):
        return None
    tables = [pq.read_table(out / PARTS / f"{part_name(i)}.parquet") for i in range(len(plan["parts"]))]
    table = pa.concat_tables(tables) if tables else pa.table({c: pa.array([], pa.string()) for c in COLUMNS})
    atomic_write_parquet(out / TABLE, table, fsync=True)
    for stale in (out / PARTS).glob("*.tmp-*"):  # torn writes of killed runs
        stale.unlink(missing_ok=True)
    counts: dict[str, int] = {}
    for src in table.column("source").to_pylist() if table.num_rows else []:
        counts[src] = counts.get(src, 0) + 1
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": plan.get("kind", "embed"),
        "created_by": f"datakit {__version__}", "model": plan["model"], "dim": plan["model"]["dim"],
        "dtype": "float16", "normalized": True, "count": int(table.num_rows), "fingerprint": plan["fingerprint"],
        "sources": [{**s, "count": counts.get(s["name"], 0)} for s in plan["sources"]],
        "parts": [{"name": part_name(i), "rows": done[i]["rows"], "unit": plan["parts"][i]} for i in sorted(done)],
        "failed": sum(m.get("failed", 0) for m in done.values()),
        "precision": sorted({m.get("precision", "") for m in done.values()} - {""}),
    }
    atomic_write_json(out / MANIFEST, manifest, fsync=True)
    return manifest


class ClipIndex:
    """A complete index opened for reading: memory-mapped parts, the row table, the model identity."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest = read_json_if_present(self.root / MANIFEST)
        if manifest is None:
            hint = " (parts still missing? run `datakit index merge`)" if (self.root / PLAN).exists() else ""
            raise InputError(f"no complete CLIP index at {root}: {MANIFEST} is missing{hint}")
        if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
            raise InputError(f"{root}: not a datakit CLIP index this version can read")
        self.manifest = manifest
        self._table: Any = None

    @property
    def identity(self) -> dict[str, Any]:
        return self.manifest["model"]

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def part_arrays(self) -> "PartList":
        """Every part's embeddings, memory-mapped on access, in row order (global row = position across parts)."""
        parts = self.manifest["parts"]
        return PartList([self.root / PARTS / f"{p['name']}.npy" for p in parts], [p["rows"] for p in parts], self.dim)

    def table(self) -> Any:
        """The row table (pyarrow), row i = global row i."""
        if self._table is None:
            import pyarrow.parquet as pq

            self._table = pq.read_table(self.root / TABLE)
            if self._table.num_rows != self.count:
                raise InputError(f"{self.root}: {TABLE} has {self._table.num_rows} rows, manifest says {self.count}")
        return self._table

    def source_root(self, name: str) -> str | None:
        """The root folder (or URL) an input was read from."""
        for s in self.manifest["sources"]:
            if s["name"] == name:
                return s.get("root")
        return None

    def unit(self, part: int) -> dict[str, Any]:
        """The input unit of part ``part``."""
        return self.manifest["parts"][part]["unit"]


class PartList(SequenceABC):  # type: ignore[type-arg]
    """Part files opened one at a time: an index may have thousands of parts, more than open-file limits allow."""

    def __init__(self, paths: Sequence[Path], rows: Sequence[int], dim: int) -> None:
        self.paths, self.rows, self.dim = list(paths), list(rows), dim

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        arr = np.load(self.paths[i], mmap_mode="r")
        if arr.shape != (self.rows[i], self.dim) or arr.dtype != np.float16:
            raise InputError(f"{self.paths[i]} is {arr.shape} {arr.dtype}; the manifest says "
                             f"({self.rows[i]}, {self.dim}) float16")
        return arr

    @property
    def total(self) -> int:
        return sum(self.rows)

    @staticmethod
    def join(lists: Sequence["PartList"]) -> "PartList":
        """Several indexes' parts as one pooled sequence (first index's rows first)."""
        dims = {pl.dim for pl in lists}
        if len(dims) > 1:
            raise InputError(f"pooled indexes have different embedding sizes {sorted(dims)}")
        return PartList([p for pl in lists for p in pl.paths], [r for pl in lists for r in pl.rows], dims.pop())
