"""Category lists and prompt templates, and ZUTIS's prompt-ensembled text embeddings.

Names are used verbatim (case included), as ZUTIS does; ``background`` is never a query. The
text embedding of a category is: embed every template filled with the name, L2-normalise each,
average, L2-normalise the mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .. import catalog
from ..errors import InputError
from ..io import read_json_file
from .model import LoadedModel, encode_texts

TEMPLATES_85 = "zutis/clip_prompt_templates_85.txt"


def _lines(rel: str, skip_first: bool = False) -> Callable[[], list[str]]:
    """A loader of a packaged text list."""
    return lambda: catalog.read_lines(rel)[1 if skip_first else 0:]


def _cocostuff() -> list[str]:
    """The 171 COCO-Stuff names in train-id order."""
    return [str(e["name"]) for e in catalog.read_json("classes/coco_stuff171.json")]  # type: ignore[union-attr]


CATEGORY_SETS: dict[str, Callable[[], list[str]]] = {
    "coco80": _lines("zutis/coco2017_things80.txt"),
    "coca80": _lines("zutis/coca80.txt"),
    "voc20": _lines("classes/voc21_names.txt", skip_first=True),
    "ade150": _lines("classes/ade150_names_larvseg.txt"),
    "ade847": _lines("classes/ade847_names_larvseg.txt"),
    "cocostuff171": _cocostuff,
    "imagenets50": _lines("zutis/imagenet_s50.txt"),
    "imagenets300": _lines("zutis/imagenet_s300.txt"),
    "imagenets919": _lines("zutis/imagenet_s919.txt"),
}


def _read_names_file(path: Path) -> list[str]:
    """Names from a user file: one per line, or a JSON list of strings."""
    if path.suffix == ".json":
        obj = read_json_file(path, "category file")
        if not isinstance(obj, list) or not all(isinstance(x, str) for x in obj):
            raise InputError(f"{path}: a JSON category file must be a list of names")
        return [x.strip() for x in obj if x.strip()]
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_categories(spec: str) -> list[str]:
    """A packaged list by name (``coco80``...) or a file (one name per line, or a JSON list)."""
    if spec in CATEGORY_SETS:
        names = CATEGORY_SETS[spec]()
    elif Path(spec).is_file():
        names = _read_names_file(Path(spec))
    else:
        raise InputError(f"--categories {spec!r} is neither a known list ({', '.join(CATEGORY_SETS)}) nor a file")
    names = [n for n in names if n != "background"]
    seen: set[str] = set()
    dups = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if dups:
        raise InputError(f"--categories {spec}: duplicate names {sorted(set(dups))[:5]} (JSON keys must be unique)")
    if not names:
        raise InputError(f"--categories {spec}: no names")
    return names


def load_templates(path: str | None = None) -> list[str]:
    """The 85 ZUTIS templates, or a file of templates (one a line, each with exactly one ``{}``)."""
    if path is None:
        templates = catalog.read_lines(TEMPLATES_85)
    else:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"--templates {path}: no such file")
        templates = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [t for t in templates if t.count("{}") != 1]
    if bad or not templates:
        raise InputError(f"templates must each hold exactly one '{{}}'; bad: {bad[:3] or 'none given'}")
    return templates


def ensemble(prompt_embeddings: np.ndarray, n_categories: int, n_templates: int) -> np.ndarray:
    """Rows grouped by category -> one unit vector per category (normalise, mean, normalise)."""
    x = prompt_embeddings.astype(np.float32).reshape(n_categories, n_templates, -1)
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    mean = x.mean(axis=1)
    return mean / np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


def text_embeddings(loaded: LoadedModel, categories: list[str], templates: list[str],
                    batch_size: int = 256) -> np.ndarray:
    """[C, dim] float32 unit vectors: ZUTIS's prompt ensemble for each category."""
    prompts = [t.format(c) for c in categories for t in templates]
    return ensemble(encode_texts(loaded, prompts, batch_size), len(categories), len(templates))
