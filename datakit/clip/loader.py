"""Decoding and batching of index parts for the embedding loop (in DataLoader workers).

Work is cut into *units*: one batch of files of a folder part, or a whole shard (a tar is read
front to back). DataLoader worker w takes units w, w+W, ..., so all workers are busy even when an
input has fewer parts than workers. Each batch names its part and its chunk within the part; the
embedding loop puts a part's chunks back in order and writes the part when its last chunk is in.

Images leave the workers as uint8 tensors, resized and cropped (a quarter of float32's bytes
through shared and pinned memory). The transform's final ``ToTensor`` + ``Normalize`` run on the
model's device instead (``DeviceNorm``), with the same arithmetic. Two faster decoders change the
pixels slightly, so they are opt-in (the default matches ZUTIS's preprocessing exactly):
``pil-draft`` lets libjpeg decode large JPEGs at a reduced scale that still covers the model's
input; ``device`` sends JPEG bytes and decodes, resizes and crops on the GPU (``device_decode``).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import InputError, SampleError
from .images import IMAGE_MEMBERS, WNID, PartTask

DECODE_MODES = ("pil", "pil-draft", "device")


def open_rgb(data: bytes | str, origin: str, draft: int = 0) -> Image.Image:
    """Decode like ZUTIS/CLIP (``Image.open(...).convert("RGB")``); a bad image is a SampleError.
    ``draft`` > 0: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale while both sides stay >= ``draft``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
            if draft > 0 and img.format == "JPEG":
                img.draft("RGB", (draft, draft))
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise SampleError("unreadable_image", f"{origin}: {err}") from None


@dataclass(frozen=True)
class DeviceNorm:
    """``ToTensor`` + ``Normalize`` applied to a uint8 [B, 3, H, W] batch on the model's device."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, batch: Any, device: str, dtype: Any) -> Any:
        import torch

        x = batch.to(device, non_blocking=True).to(torch.float32).div_(255)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std).to(dtype)


def split_transform(transform: Any) -> tuple[Any, DeviceNorm | None]:
    """(worker transform ending in a uint8 tensor, device normalisation) when ``transform`` ends with
    ToTensor + Normalize, as open_clip's do; otherwise (``transform``, None): it runs whole in the workers."""
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", []))
    if not isinstance(transform, T.Compose) or len(steps) < 2:
        return transform, None
    to_tensor, norm = steps[-2], steps[-1]
    if not (isinstance(to_tensor, T.ToTensor) and isinstance(norm, T.Normalize)):
        return transform, None
    mean, std = norm.mean, norm.std
    if isinstance(mean, (int, float)) or isinstance(std, (int, float)):
        return transform, None
    return T.Compose([*steps[:-2], T.PILToTensor()]), DeviceNorm(tuple(map(float, mean)), tuple(map(float, std)))


class PilDecoder:
    """Workers decode with PIL and run the transform (resize, crop) to a uint8 tensor: the default, as ZUTIS."""

    stacks = True

    def __init__(self, transform: Any, draft: int = 0) -> None:
        self.transform, self.draft = transform, draft

    def __call__(self, source: bytes | str, origin: str) -> Any:
        return self.transform(open_rgb(source, origin, self.draft))


class RawDecoder:
    """Workers only read: an RGB or grey JPEG travels as its bytes (a 1-D uint8 tensor) and is decoded, resized
    and cropped on the model's device (``device_decode``); anything else is decoded here, as by PilDecoder."""

    stacks = False

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, source: bytes | str, origin: str) -> Any:
        import torch

        if isinstance(source, str):
            try:
                with open(source, "rb") as f:
                    source = f.read()
            except OSError as err:
                raise SampleError("unreadable_file", f"{origin}: {err.strerror or err}") from None
        try:
            with Image.open(io.BytesIO(source)) as img:  # the header only: no pixels are decoded here
                jpeg = img.format == "JPEG" and img.mode in ("RGB", "L")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise SampleError("unreadable_image", f"{origin}: {err}") from None
        if jpeg:
            return torch.frombuffer(bytearray(source), dtype=torch.uint8)
        return self.transform(open_rgb(source, origin))


Item = tuple[str, str, "str | None", "bytes | str | None", str]  # key, path, wnid, file or bytes, origin


def _file_items(task: PartTask, start: int, stop: int) -> Iterator[Item]:
    """(key, relative path, wnid, file, origin) of files ``start:stop`` of a part."""
    for rel in task.files[start:stop]:
        parts = rel.replace(os.sep, "/").split("/")
        wnid = parts[0] if task.kind == "imagenet" and len(parts) > 1 and WNID.match(parts[0]) else None
        full = os.path.join(task.root, rel)
        yield os.path.splitext(rel)[0].replace(os.sep, "/"), rel.replace(os.sep, "/"), wnid, full, full


def _shard_items(task: PartTask) -> Iterator[Item]:
    """(key, path from the sample's json, wnid, image bytes or None, origin) of each sample of a shard."""
    from ..shards.reader import iter_shard

    for sample in iter_shard(task.shard):
        key = str(sample["__key__"])
        meta: dict[str, Any] = {}
        raw = sample.get("json")
        if isinstance(raw, bytes):
            try:
                meta = json.loads(raw)
            except ValueError:
                meta = {}
        data = next((sample[m] for m in IMAGE_MEMBERS if isinstance(sample.get(m), bytes)), None)
        yield key, str(meta.get("path") or key), meta.get("wnid"), data, f"{task.shard}:{key}"


@dataclass(frozen=True)
class Unit:
    """One piece of loader work: files ``start:stop`` of a folder part (chunk ``chunk``, the last one when
    ``last``), or a whole shard part (``stop`` = -1: it numbers its own chunks)."""

    task: PartTask
    chunk: int
    start: int
    stop: int
    last: bool


def work_units(tasks: Sequence[PartTask], batch_size: int) -> list[Unit]:
    """Every part's units in order: folder parts in batches of ``batch_size`` files, shard parts whole."""
    units = []
    for task in tasks:
        if task.kind == "shards":
            units.append(Unit(task, 0, 0, -1, True))
            continue
        n = len(task.files)
        chunks = max(1, -(-n // batch_size))
        for c in range(chunks):
            units.append(Unit(task, c, c * batch_size, min(n, (c + 1) * batch_size), c == chunks - 1))
    return units


def _batch(unit: Unit, chunk: int, last: bool, tensors: list[Any], meta: list[tuple[str, str, str | None]],
           failures: list[dict[str, str]], stack: bool) -> dict[str, Any]:
    """A batch dict: the tensors (stacked, or a list for device decoding), the rows' metadata, the chunk's failures."""
    import torch

    images = (torch.stack(tensors) if stack else tensors) if tensors else None
    return {
        "part": unit.task.index, "chunk": chunk, "last": last, "images": images,
        "keys": [m[0] for m in meta], "paths": [m[1] for m in meta], "wnids": [m[2] for m in meta],
        "failures": failures,
    }


def iter_unit_batches(unit: Unit, decode: Any, batch_size: int) -> Iterator[dict[str, Any]]:
    """Batches of one unit (``decode`` makes each image's tensor); a part's final batch has ``last=True`` (it may
    be empty)."""
    items = _shard_items(unit.task) if unit.stop < 0 else _file_items(unit.task, unit.start, unit.stop)
    tensors: list[Any] = []
    meta: list[tuple[str, str, str | None]] = []
    failures: list[dict[str, str]] = []
    chunk = unit.chunk
    for key, path, wnid, source, origin in items:
        try:
            if source is None:
                raise SampleError("missing_image", origin)
            tensors.append(decode(source, origin))
        except SampleError as err:
            failures.append({"key": key, "path": path, "reason": err.reason, "detail": err.detail})
            continue
        meta.append((key, path, wnid))
        if unit.stop < 0 and len(tensors) == batch_size:  # a shard: cut it into batches as it is read
            yield _batch(unit, chunk, False, tensors, meta, failures, decode.stacks)
            tensors, meta, failures, chunk = [], [], [], chunk + 1
    yield _batch(unit, chunk, unit.last, tensors, meta, failures, decode.stacks)


class PartStream(IterableDataset):
    """An IterableDataset over work units: DataLoader worker w reads units w, w+W, ..."""

    def __init__(self, tasks: Sequence[PartTask], decode: Any, batch_size: int) -> None:
        super().__init__()
        self.units = work_units(tasks, batch_size)
        self.decode = decode
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        mine = self.units if info is None else self.units[info.id::info.num_workers]
        for unit in mine:
            yield from iter_unit_batches(unit, self.decode, self.batch_size)


def make_loader(tasks: Sequence[PartTask], decode: Any, batch_size: int, workers: int, pin: bool) -> Any:
    """A DataLoader yielding ready batches (reading, decoding and batching happen in the workers)."""
    stream = PartStream(tasks, decode, batch_size)
    workers = max(0, min(workers, len(stream.units)))
    extra: dict[str, Any] = {"prefetch_factor": 2, "persistent_workers": False} if workers > 0 else {}  # in /dev/shm
    return DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin, **extra)


def make_decoder(mode: str, transform: Any, preprocess: dict[str, Any]) -> Any:
    """The workers' decoder for ``--decode``: pil, pil-draft, or device (JPEGs decoded on the model's device)."""
    if mode not in DECODE_MODES:
        raise InputError(f"unknown decode mode {mode!r}; use one of {DECODE_MODES}")
    if mode == "device":
        return RawDecoder(transform)
    return PilDecoder(transform, draft_size(mode, preprocess))


def draft_size(decode: str, preprocess: dict[str, Any]) -> int:
    """The smallest side a draft decode must keep (0: no draft), from the model's preprocessing record."""
    if decode not in DECODE_MODES:
        raise InputError(f"unknown decode mode {decode!r}; use one of {DECODE_MODES}")
    if decode != "pil-draft":
        return 0
    size = preprocess.get("size", 0)
    return int(max(size) if isinstance(size, (list, tuple)) else size)
