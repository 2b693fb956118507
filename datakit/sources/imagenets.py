"""ImageNet-S 50/300/919 from a local ImageNet-1k copy, as the official lists define it.

Splits ``train`` (every train image of the subset's classes, with the five S919 merges),
``train-semi``, ``validation`` and ``test`` (ImageNet val images under their ImageNet-S class).
With ``annotations`` the official masks go into ``train-semi`` and ``validation`` as 16-bit ids
(0 other, 1..N classes, 1000 ignore). Module hooks: ``make_source``, ``export`` (the official
folder layout) and ``report`` (counts against the published ones).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import SampleError
from ..imagenets.inputs import decode_official_mask, read_mask_bytes
from ..imagenets.lists import IGNORE_ID, PUBLISHED, load_lists
from ..imagenets.params import ImageNetSParams, parse_params, parse_split_name
from ..imagenets.records import MASKED_SPLITS, missing_train_folders, split_records
from ..sample import Record, Sample
from ..shards.spec import MaskMember, SplitSpec
from .folders import read_file

if TYPE_CHECKING:
    from ..imagenets.folder import FolderReport

MASK = MaskMember(ext="seg.png", bits=16, fill=IGNORE_ID)
_META_FIELDS = {"source_wnid": "source_wnid", "label": "imagenet_label"}


@dataclass
class ImageNetSSource:
    """One subset (split names as given) or all three (split names ``s<N>-<split>``)."""

    params: ImageNetSParams
    name: str = "imagenets"
    missing_folders: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Name the source after its subset and note absent train folders once."""
        if len(self.params.subsets) == 1:
            self.name = f"imagenets{self.params.subsets[0]}"
        if "train" in self.params.splits:
            self.missing_folders = {n: tuple(missing_train_folders(self.params, n)) for n in self.params.subsets}

    def splits(self) -> Sequence[str]:
        """The requested splits (prefixed by subset when several subsets are built)."""
        return self.params.split_names()

    def spec(self, split: str) -> SplitSpec:
        """Class table of the subset, 16-bit masks (fill 1000) where annotations apply, cls and json."""
        subset, base = parse_split_name(split, self.params.subsets)
        masked = self.params.annotations is not None and base in MASKED_SPLITS
        notes: dict[str, Any] = {
            "subset": subset, "split": base, "published_count": PUBLISHED[subset][base],
            "labels": "cls = ImageNet-S class id of the image (0 other, 1..N, 1000 ignore); wnid in json",
        }
        if masked:
            notes["masks"] = "official annotations, id = R + 256*G; images without one are all 1000"
        if base == "train" and self.missing_folders.get(subset):
            notes["missing_class_folders"] = list(self.missing_folders[subset])
        return SplitSpec(f"imagenets{subset}", split, load_lists(subset).class_table(),
                         masks=(MASK,) if masked else (), cls=True, notes=notes)

    def records(self, split: str) -> list[Record]:
        """Records of the split from the lists and the ImageNet copy (on the driver)."""
        subset, base = parse_split_name(split, self.params.subsets)
        return split_records(self.params, subset, base)

    def load(self, record: Record) -> Sample:
        """Read the image bytes and decode the official mask (in a worker)."""
        data = record.data
        rel = _relative(data["path"], self.params.imagenet)
        if data.get("missing"):
            raise SampleError("missing_image", rel)
        subset = int(data["subset"])
        meta: dict[str, Any] = {"wnid": data["wnid"], "subset": subset, "path": rel}
        meta.update({out: data[k] for k, out in _META_FIELDS.items() if k in data})
        masks = {}
        if "mask" in data:
            ref = data["mask"]
            meta["annotated"] = ref is not None
            if ref is not None:
                masks[MASK.ext] = decode_official_mask(read_mask_bytes(ref), subset, ref.label)
        return Sample(record.key, read_file(data["path"]), masks, data["cls"], meta, data["path"])


def _relative(path: str, root: str) -> str:
    """``path`` relative to the ImageNet root (records always hold ``root/...``; relpath is slow)."""
    prefix = root.rstrip(os.sep) + os.sep
    return path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)


def make_source(params: Mapping[str, Any]) -> ImageNetSSource:
    """The recipe hook: validate the parameters and return the source."""
    return ImageNetSSource(parse_params(params))


def export(params: Mapping[str, Any], out: str, opts: Any) -> "FolderReport":
    """The ``--format folder`` hook: write the official ``ImageNetS{N}/`` layout under ``out``."""
    from ..imagenets.folder import export_folder

    return export_folder(parse_params(params), out, opts)


def report(build_report: Any, params: Mapping[str, Any]) -> str:
    """The post-build hook: counts per split against the published ones."""
    from ..imagenets.report import count_table

    return count_table(build_report, parse_params(params))
