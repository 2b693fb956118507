"""The dataset card beside each split: what HF ``datasets`` reads and what a person reads."""

from datakit.shards.card import dataset_card
from datakit.shards.spec import ClassTable, MaskMember, SplitSpec


def spec(split: str = "val", dataset: str = "voc2012") -> SplitSpec:
    masks = (MaskMember("seg.png", 8, 255), MaskMember("sal.png", 8, 0, role="saliency"))
    return SplitSpec(dataset, split, ClassTable.from_names(["background", "aeroplane"], 255), masks=masks)


def test_each_member_row_says_what_its_pixels_are():
    rows = {ln.split("|")[1].strip(): ln for ln in dataset_card(spec(), "0" * 16).decode().splitlines()
            if ln.startswith("| `")}
    assert "class id" in rows["`seg.png`"] and "fill/ignore 255" in rows["`seg.png`"]
    assert "0 background, 255 salient" in rows["`sal.png`"] and "class id" not in rows["`sal.png`"]


def test_the_config_name_differs_by_dataset_split_and_content():
    def config(card: bytes) -> str:
        (line,) = [ln for ln in card.decode().splitlines() if ln.startswith("- config_name:")]
        return line.split(":", 1)[1].strip()

    names = {config(dataset_card(spec(split, dataset), content))
             for split in ("train", "val") for dataset in ("voc2012", "ade150") for content in ("a" * 16, "b" * 16)}
    assert len(names) == 8
    assert all(n.replace("-", "").replace("_", "").replace(".", "").isalnum() for n in names)
