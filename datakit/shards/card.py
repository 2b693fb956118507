"""The dataset card written beside a split's shards, so Hugging Face ``datasets`` reads the folder right.

``load_dataset("<split folder>")`` infers a builder from the files it finds; without a card it picks
the JSON builder from ``index.json`` and the ``*.stats.json`` files and returns one row of stats.
The card's ``configs`` block points it at the ``*.tar`` shards (its webdataset builder), and the text
says how to read the members, the mask encoding above all. Its config name carries the content id.
"""

from __future__ import annotations

from .spec import MASK_ENCODINGS, SplitSpec

CARD_NAME = "README.md"
CARD_MARK = "<!-- written by datakit -->"


def dataset_card(spec: SplitSpec, content: str) -> bytes:
    """The card of one split: a YAML header for ``datasets``, then the members and how to decode them.

    ``content`` (``index.content_id``) goes into the config name. ``datasets`` names its cache after
    the folder, the config name and the data-file *patterns*, never their content, so with one fixed
    name every ``val`` folder (and every rebuild of one) would be served from the first one's cache."""
    config = f"{_hf_name(spec.dataset)}-{_hf_name(spec.split)}-{content[:12]}"
    lines = [
        "---",
        "configs:",
        f"- config_name: {config}",
        "  data_files:",
        f"  - split: {_hf_name(spec.split) or 'train'}",
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
        if m.role == "saliency":
            lines.append(f"| `{m.ext}` | saliency mask, `{m.encoding}`: 0 background, 255 salient; fill {m.fill} |")
        else:
            lines.append(f"| `{m.ext}` | {m.role} mask, `{m.encoding}`: {MASK_ENCODINGS[m.encoding]}; fill/ignore {m.fill} |")
    if spec.cls:
        lines.append("| `cls` | image-level class id (text) |")
    if spec.meta:
        lines.append("| `json` | per-sample metadata |")
    lines += ["", f"Ignore id: {spec.ignore_id}.", ""]
    if spec.masks:
        lines += ["Readers that decode PNGs as RGB (webdataset's `pil`/`rgb8`, HF `datasets`): a `gray8` value is any "
                  "one channel (R = G = B), an `rgb16` value is R + 256*G.", ""]
    return "\n".join(lines).encode()


def _hf_name(name: str) -> str:
    """A name ``datasets`` accepts for a split or config (letters, digits, ``_`` and ``.``)."""
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)
