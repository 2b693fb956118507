"""The declared shape of one split: class table, ignore id and member set.

Every sample of a split carries exactly these members, so readers (webdataset, HF datasets,
datakit's loader) never meet a sample with a different key set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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


@dataclass(frozen=True)
class MaskMember:
    """A single-channel label map member. ``bits`` is 8 or 16; ``fill`` fills a missing mask."""

    ext: str = "seg.png"
    bits: int = 8
    fill: int = 255
    role: str = "semantic"

    def __post_init__(self) -> None:
        if self.bits not in (8, 16):
            raise ValueError(f"mask bits must be 8 or 16, not {self.bits}")
        if not self.ext.endswith(".png"):
            raise ValueError(f"mask member must be a .png, not {self.ext!r}")
        if not 0 <= self.fill < (1 << self.bits):
            raise ValueError(f"fill {self.fill} does not fit {self.bits} bits")

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
            "class_table": self.classes.to_json() if self.classes else None,
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "SplitSpec":
        table = obj.get("class_table")
        return cls(
            dataset=obj["dataset"],
            split=obj["split"],
            classes=ClassTable.from_json(table) if table else None,
            image="jpg" in obj["members"],
            masks=tuple(MaskMember(**m) for m in obj.get("masks", [])),
            cls="cls" in obj["members"],
            meta="json" in obj["members"],
            notes=obj.get("notes", {}),
        )
