"""ImageNet-S 50/300/919 from a local ImageNet-1k copy, as the official lists define it.

Splits ``train`` (every train image of the subset's classes, with the five S919 merges),
``train-semi``, ``validation`` and ``test`` (ImageNet val images under their ImageNet-S class).
With ``annotations`` the official masks go into ``train-semi`` and ``validation`` as 16-bit ids
(0 other, 1..N classes, 1000 ignore). Module hooks: ``make_source``, ``export`` (the official
folder layout) and ``report`` (counts against the published ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..shards.spec import MaskMember, SplitSpec
from ..sources.base import Listing, Record, Sample
from ..sources.common import read_input
from .inputs import decode_official_mask, read_mask_bytes
from .lists import IGNORE_ID, PUBLISHED, load_lists
from .params import ImageNetSParams, parse_imagenets_params, parse_split_name
from .records import MASKED_SPLITS, ImageNetSImage, missing_train_folders, split_records

if TYPE_CHECKING:
    from .folder import FolderReport

MASK = MaskMember(ext="seg.png", bits=16, fill=IGNORE_ID)


@dataclass(frozen=True)
class ImageNetSSource:
    """One subset (split names as given) or all three (split names ``s<N>-<split>``)."""

    params: ImageNetSParams

    @property
    def name(self) -> str:
        """Named after its subset (``imagenets300``), or ``imagenets`` for all three."""
        return f"imagenets{self.params.subsets[0]}" if len(self.params.subsets) == 1 else "imagenets"

    def roots(self) -> tuple[str, ...]:
        return (self.params.imagenet, self.params.annotations) if self.params.annotations else (self.params.imagenet,)

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
        return SplitSpec(f"imagenets{subset}", split, load_lists(subset).class_table(),
                         masks=(MASK,) if masked else (), cls=True, notes=notes)

    def records(self, split: str) -> Listing:
        """Records of the split from the lists and the ImageNet copy (on the driver)."""
        subset, base = parse_split_name(split, self.params.subsets)
        facts: dict[str, Any] = {}
        if base == "train":
            missing = missing_train_folders(self.params, subset)
            if missing:
                facts["missing_class_folders"] = missing
        return Listing(split_records(self.params, subset, base), facts)

    def load(self, record: Record[ImageNetSImage]) -> Sample:
        """Read the image bytes and decode the official mask (in a worker)."""
        img = record.payload
        assert isinstance(img, ImageNetSImage)
        meta: dict[str, Any] = {"wnid": img.wnid, "subset": img.subset, "path": img.rel}
        if img.source_wnid:
            meta["source_wnid"] = img.source_wnid
        if img.label:
            meta["imagenet_label"] = img.label
        masks = {}
        if img.masked:
            meta["annotated"] = img.mask is not None
            if img.mask is not None:
                masks[MASK.ext] = decode_official_mask(read_mask_bytes(img.mask), img.subset, img.mask.label)
        return Sample(record.key, read_input(img.path), masks, img.cls, meta, img.path)


def make_source(params: Mapping[str, Any]) -> ImageNetSSource:
    """The recipe hook: validate the parameters and return the source."""
    return ImageNetSSource(parse_imagenets_params(params))


def export(params: Mapping[str, Any], out: str, opts: Any) -> "FolderReport":
    """The ``--format folder`` hook: write the official ``ImageNetS{N}/`` layout under ``out``."""
    from .folder import export_folder

    return export_folder(parse_imagenets_params(params), out, opts)


def report(build_report: Any, params: Mapping[str, Any]) -> str:
    """The post-build hook: counts per split against the published ones."""
    from .report import count_table

    return count_table(build_report, parse_imagenets_params(params))
