"""``datakit index import-zutis``: turn ZUTIS's published embedding pickle into a datakit index.

The pickle is ``{basename: FloatTensor[768]}`` (L2-normalised, float32, insertion order = ZUTIS's
file order). It is read with a restricted unpickler that only rebuilds tensors and arrays, so a
hostile pickle cannot run code. ImageNet names (``nXXXXXXXX_*.JPEG``) get their wnid and a
``<wnid>/<file>`` path; other names (PASS) keep the bare file name.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from . import store
from .embed import IndexReport, prepare_plan
from .model import DEFAULT_MODEL, DEFAULT_PRETRAINED, config_identity

IMAGENET_NAME = re.compile(r"^(n\d{8})_[^/]+$")


@dataclass(frozen=True)
class ImportOptions:
    """Which source the pickle covers and which model made it (ZUTIS: ViT-L/14@336px, OpenAI weights)."""

    source: str | None = None  # default: "imagenet" when the names are ImageNet's, else "pass"
    image_root: str | None = None  # where the images live, e.g. /data/ImageNet2012/train
    model: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    part_size: int = 100_000
    overwrite: bool = False


def _load_from_bytes(data: bytes) -> Any:
    """Tensor storages inside the pickle, read with torch's weights-only loader."""
    import torch

    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _np_reconstruct() -> Any:
    """numpy's array rebuild function (its module moved in numpy 2)."""
    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct


class _SafeUnpickler(pickle.Unpickler):
    """Only tensor/array rebuild functions may be referenced; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a global referenced by the pickle, from the allow-list only."""
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _load_from_bytes
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an embedding pickle")
        if module.startswith("numpy") and name == "_reconstruct":
            return _np_reconstruct()
        return super().find_class(module, name)  # torch._utils rebuilders, OrderedDict, ndarray, dtype


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"), ("collections", "OrderedDict"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


def read_zutis_pickle(path: str | Path) -> dict[str, Any]:
    """The ``{name: vector}`` dict of a ZUTIS embedding pickle."""
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f).load()
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, RuntimeError) as err:
        raise InputError(f"{path}: not a ZUTIS embedding pickle ({err})") from None
    if not isinstance(obj, dict) or not obj:
        raise InputError(f"{path}: expected a non-empty dict of name -> embedding, got {type(obj).__name__}")
    return obj


def _vector(name: str, value: Any) -> np.ndarray:
    """One embedding as a float32 vector (torch tensor or array, [D] or [1, D])."""
    arr = value.detach().float().cpu().numpy() if hasattr(value, "detach") else np.asarray(value, np.float32)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise InputError(f"embedding of {name!r} has shape {arr.shape}; expected one vector")
    return arr.astype(np.float32)


def _row_meta(name: str) -> tuple[str, str, str | None]:
    """(key, path, wnid) of a ZUTIS file name."""
    m = IMAGENET_NAME.match(name)
    stem = name.rsplit(".", 1)[0]
    return (stem, f"{m.group(1)}/{name}", m.group(1)) if m else (stem, name, None)


def import_zutis(pkl: str | Path, out: str | Path, opts: ImportOptions = ImportOptions()) -> IndexReport:
    """Write the pickle's vectors as a datakit index (float16, re-normalised) under ``out``."""
    data = read_zutis_pickle(pkl)
    names = list(data)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise InputError(f"{pkl}: keys must be file names, found {bad[0]!r}")
    looks_imagenet = sum(bool(IMAGENET_NAME.match(n)) for n in names[:1000]) >= 0.9 * min(len(names), 1000)
    source = opts.source or ("imagenet" if looks_imagenet else "pass")
    dim = _vector(names[0], data[names[0]]).shape[0]
    identity = config_identity(opts.model, opts.pretrained, dim)
    units, chunks = [], []
    for start in range(0, len(names), opts.part_size):
        chunk = names[start:start + opts.part_size]
        digest = hashlib.sha256("\n".join(chunk).encode()).hexdigest()[:16]
        units.append({"source": source, "kind": "zutis-import", "first": chunk[0], "count": len(chunk), "sha": digest})
        chunks.append(chunk)
    sources = [{"name": source, "kind": "zutis-import", "root": opts.image_root, "file": Path(pkl).name}]
    plan = store.make_plan(identity, sources, units, kind="zutis-import")
    out = Path(out)
    prepare_plan(out, plan, opts.overwrite, 1)
    done = store.done_parts(out, plan)
    report = IndexReport(str(out), len(units), device="none", precision="imported")
    for i, chunk in enumerate(chunks):
        if i in done:
            report.parts_skipped += 1
            continue
        listed = [_vector(n, data[n]) for n in chunk]
        sizes = sorted({v.shape[0] for v in listed} | {dim})
        if len(sizes) > 1:
            raise InputError(f"{pkl}: embeddings have different sizes {sizes}")
        vecs = np.stack(listed)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise InputError(f"{pkl}: part {i} holds a zero or non-finite embedding")
        meta = [_row_meta(n) for n in chunk]
        rows = store.PartRows(i, (vecs / norms).astype(np.float16), [m[0] for m in meta], [source] * len(chunk),
                              [m[1] for m in meta], [m[2] for m in meta])
        store.write_part(out, rows, plan, [], {"precision": "imported", "imported_from": str(pkl)})
        report.parts_written += 1
        report.images += len(chunk)
    report.manifest = store.finalize(out, plan)
    return report
