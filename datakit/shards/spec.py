"""The declared shape of one split: class table, ignore id and member set.

Every sample of a split carries exactly these members, so readers (webdataset, HF datasets,
datakit's loader) never meet a sample with a different key set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InputError


@dataclass(frozen=True)
class ClassEntry:
    id: int
    name: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassTable:
    """Class ids to names. ``ignore_index`` is the id that is never a class (255, 1000, 65535...)."""

    entries: tuple[ClassEntry, ...]
    ignore_index: int | None = None

    @classmethod
    def from_names(cls, names: list[str], ignore_index: int | None = None, start: int = 0) -> "ClassTable":
        return cls(tuple(ClassEntry(start + i, n) for i, n in enumerate(names)), ignore_index)

    @property
    def max_id(self) -> int:
        return max((e.id for e in self.entries), default=0)

    def names(self) -> dict[int, str]:
        return {e.id: e.name for e in self.entries}

    def to_json(self) -> dict[str, Any]:
        return {
            "ignore_index": self.ignore_index,
            "classes": [{"id": e.id, "name": e.name, **e.extra} for e in self.entries],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "ClassTable":
        entries = []
        for item in obj["classes"]:
            extra = {k: v for k, v in item.items() if k not in ("id", "name")}
            entries.append(ClassEntry(int(item["id"]), str(item["name"]), extra))
        return cls(tuple(entries), obj.get("ignore_index"))


MASK_ENCODINGS = {
    "gray8": "single-channel 8-bit PNG: the pixel value is the class id",
    "rgb16": "RGB PNG, id = R + 256*G, B = 0 (the official ImageNet-S coding; lossless through "
             "webdataset's .decode('pil'/'rgb') and HF datasets, which read PNGs as RGB)",
    "gray16": "single-channel 16-bit PNG (datakit < 0.2; readers that convert to RGB clip it to 255)",
}


def default_encoding(bits: int) -> str:
    """What the writer produces: 8-bit ids as grey PNGs, wider ids in the RGB coding."""
    return "gray8" if bits == 8 else "rgb16"


@dataclass(frozen=True)
class MaskMember:
    """A label map member. ``bits`` is 8 or 16 (the id range); ``fill`` fills a missing mask;
    ``encoding`` is how the PNG stores the ids (``MASK_ENCODINGS``), chosen from ``bits`` by default."""

    ext: str = "seg.png"
    bits: int = 8
    fill: int = 255
    role: str = "semantic"
    encoding: str = ""

    def __post_init__(self) -> None:
        if self.bits not in (8, 16):
            raise ValueError(f"mask bits must be 8 or 16, not {self.bits}")
        if not self.ext.endswith(".png"):
            raise ValueError(f"mask member must be a .png, not {self.ext!r}")
        if not 0 <= self.fill < (1 << self.bits):
            raise ValueError(f"fill {self.fill} does not fit {self.bits} bits")
        if not self.encoding:
            object.__setattr__(self, "encoding", default_encoding(self.bits))
        if self.encoding not in MASK_ENCODINGS or (self.encoding == "gray8") != (self.bits == 8):
            raise ValueError(f"mask encoding {self.encoding!r} does not fit {self.bits}-bit ids")

    @staticmethod
    def for_ids(max_value: int, ext: str = "seg.png", fill: int | None = None, role: str = "semantic") -> "MaskMember":
        """8-bit where every id (ignore included) fits, 16-bit otherwise."""
        fill = max_value if fill is None else fill
        return MaskMember(ext=ext, bits=8 if max(max_value, fill) <= 255 else 16, fill=fill, role=role)


@dataclass(frozen=True)
class SplitSpec:
    """Everything the writer and the index need to know about one split."""

    dataset: str
    split: str
    classes: ClassTable | None = None
    image: bool = True
    masks: tuple[MaskMember, ...] = ()
    cls: bool = False
    meta: bool = True
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ignore_id(self) -> int:
        """The id that is never a class: the class table's, else the first mask's fill, else 255."""
        if self.classes is not None and self.classes.ignore_index is not None:
            return int(self.classes.ignore_index)
        return int(self.masks[0].fill) if self.masks else 255

    def mask_ext(self, wanted: str | None = None) -> str | None:
        """The mask member a reader should use: ``wanted`` if given (an unknown one is an InputError),
        else the first semantic mask, else the first mask; None for a split without masks."""
        exts = [m.ext for m in self.masks]
        if wanted is not None:
            if wanted not in exts:
                raise InputError(f"{self.dataset}/{self.split} has no mask member {wanted!r}; it has {exts or 'none'}")
            return wanted
        semantic = [m.ext for m in self.masks if m.role == "semantic"]
        found = semantic or exts
        return found[0] if found else None

    def members(self) -> list[str]:
        out = ["jpg"] if self.image else []
        out += [m.ext for m in self.masks]
        if self.cls:
            out.append("cls")
        if self.meta:
            out.append("json")
        return sorted(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "members": self.members(),
            "masks": [asdict(m) for m in self.masks],
            "mask_encoding": {m.ext: m.encoding for m in self.masks},
            "class_table": self.classes.to_json() if self.classes else None,
            "notes": self.notes,
        }

    def content_json(self) -> dict[str, Any]:
        """What the shards' bytes depend on (class table, members, masks), without the notes."""
        obj = self.to_json()
        obj.pop("notes")
        return obj

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "SplitSpec":
        table = obj.get("class_table")
        return cls(
            dataset=obj["dataset"],
            split=obj["split"],
            classes=ClassTable.from_json(table) if table else None,
            image="jpg" in obj["members"],
            masks=tuple(_mask_from_json(m) for m in obj.get("masks", [])),
            cls="cls" in obj["members"],
            meta="json" in obj["members"],
            notes=obj.get("notes", {}),
        )


def _mask_from_json(obj: dict[str, Any]) -> MaskMember:
    """A mask member of an index; 16-bit masks of indexes written before encodings were named are gray16."""
    fields = dict(obj)
    if not fields.get("encoding"):
        fields["encoding"] = "gray8" if int(fields.get("bits", 8)) == 8 else "gray16"
    return MaskMember(**fields)
