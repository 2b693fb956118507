"""The dataset card written beside a split's shards, so Hugging Face ``datasets`` reads the folder right.

``load_dataset("<split folder>")`` infers a builder from the files it finds; without a card it picks
the JSON builder from ``index.json`` and the ``*.stats.json`` files and returns one row of stats.
The card's ``configs`` block points it at the ``*.tar`` shards (its webdataset builder), and the text
says how to read the members, the mask encoding above all.
"""

from __future__ import annotations

from .spec import MASK_ENCODINGS, SplitSpec

CARD_NAME = "README.md"
CARD_MARK = "<!-- written by datakit -->"


def dataset_card(spec: SplitSpec) -> bytes:
    """The card of one split: a YAML header for ``datasets``, then the members and how to decode them."""
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        f"  - split: {_hf_split(spec.split)}",
        '    path: "*.tar"',
        "---",
        CARD_MARK,
        f"# {spec.dataset} / {spec.split}",
        "",
        "webdataset shards written by datakit; `index.json` is their wids index (class table, ignore id, "
        "hashes, build notes).",
        "",
        "| member | content |",
        "|---|---|",
    ]
    if spec.image:
        lines.append("| `jpg` | RGB JPEG |")
    for m in spec.masks:
        lines.append(f"| `{m.ext}` | {m.role} mask, `{m.encoding}`: {MASK_ENCODINGS[m.encoding]}; fill/ignore {m.fill} |")
    if spec.cls:
        lines.append("| `cls` | image-level class id (text) |")
    if spec.meta:
        lines.append("| `json` | per-sample metadata |")
    lines += ["", f"Ignore id: {spec.ignore_id}.", ""]
    return "\n".join(lines).encode()


def _hf_split(name: str) -> str:
    """A split name ``datasets`` accepts (letters, digits, ``_`` and ``.``)."""
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name) or "train"
