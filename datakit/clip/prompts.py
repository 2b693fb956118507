"""Category lists and prompt templates, and ZUTIS's prompt-ensembled text embeddings.

Names are used verbatim (case included), as ZUTIS does; ``background`` is never a query. The
text embedding of a category is: embed every template filled with the name, L2-normalise each,
average, L2-normalise the mean.

Prompts are encoded in batches of similar length, each cut to its longest prompt: CLIP's text
tower is causal and pools at the end token, so the padding up to the 77-token context changes
nothing but the cost (a prompt is ~12 tokens, so this is ~5x less work).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import catalog
from ..errors import InputError
from ..io import read_json_file
from .model import LoadedModel

TEMPLATES_85 = "zutis/clip_prompt_templates_85.txt"


def _lines(rel: str, skip_first: bool = False) -> Callable[[], list[str]]:
    """A loader of a packaged text list."""
    return lambda: catalog.read_lines(rel)[1 if skip_first else 0:]


def _cocostuff() -> list[str]:
    """The 171 COCO-Stuff names in train-id order."""
    return [str(e["name"]) for e in catalog.manifest_json("classes/coco_stuff171.json")]  # type: ignore[union-attr, attr-defined]


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


Advance = Callable[[int], None]
CHECK_COSINE = 0.999  # the cut encoding must agree with open_clip's full-context one (fp16 on GPU: ~0.9999)


def _end_positions(model: Any, tokens: Any) -> Any:
    """Per prompt, the number of leading tokens that decide its embedding; None when cutting is not exact
    (a tower that is not causal, or that pools elsewhere than at the end token)."""
    import torch

    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    mask = getattr(model, "attn_mask", None)
    pool = getattr(model, "text_pool_type", None)
    if mask is None or mask.dim() != 2 or pool not in ("argmax", "eos") or not all(hasattr(model, a) for a in needed):
        return None
    m = mask.detach().float().cpu()
    upper = torch.ones(m.shape, dtype=torch.bool).triu(1)
    if not (torch.equal(torch.isneginf(m), upper) and bool((m[~upper] == 0).all())):
        return None
    if pool == "argmax":  # the end token has the highest id
        return tokens.argmax(dim=-1) + 1
    eos = getattr(model, "text_eos_id", None)
    return None if eos is None else (tokens == eos).int().argmax(dim=-1) + 1


def _encode_cut(model: Any, tokens: Any) -> Any:
    """open_clip's ``CLIP.encode_text`` on tokens cut to ``tokens.shape[1]`` positions (causal mask cut alike)."""
    from open_clip.transformer import text_global_pool
    from torch import nn

    n = tokens.shape[1]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:n].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    proj = model.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def _unit(x: Any) -> np.ndarray:
    """Rows L2-normalised in float32, as a numpy array."""
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


def _cut_is_exact(loaded: LoadedModel, tokens: Any, ends: Any) -> bool:
    """Encode the longest prompt both ways once: a tower that differs from what the cut assumes is caught here."""
    i = int(ends.argmax())
    row = tokens[i:i + 1].to(loaded.device)
    full = _unit(loaded.model.encode_text(row))
    cut = _unit(_encode_cut(loaded.model, row[:, :int(ends[i])]))
    return float((full * cut).sum()) >= CHECK_COSINE


def encode_texts(loaded: LoadedModel, texts: Sequence[str], batch_size: int = 256, advance: Advance | None = None,
                 cut: bool = True) -> np.ndarray:
    """float32 L2-normalised text embeddings, one row per text (in the given order).

    ``cut=False`` encodes every prompt over the full context in the given order (the old way, kept
    for benchmarks). ``advance(n)`` is called after each batch with the number of prompts done."""
    import torch

    out = np.zeros((len(texts), loaded.dim), np.float32)
    if not len(texts):
        return out
    with torch.inference_mode():
        tokens = loaded.tokenizer(list(texts))
        ends = _end_positions(loaded.model, tokens) if cut else None
        if ends is not None and not _cut_is_exact(loaded, tokens, ends):
            ends = None
        order = torch.argsort(ends, stable=True) if ends is not None else torch.arange(len(texts))
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            batch = tokens[rows].to(loaded.device)
            if ends is None:
                feats = loaded.model.encode_text(batch)
            else:
                feats = _encode_cut(loaded.model, batch[:, :int(ends[rows].max())])
            out[rows.numpy()] = _unit(feats)
            if advance is not None:
                advance(len(rows))
    return out


def prompts_of(categories: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every template filled with every category, grouped by category (the order ``ensemble`` expects)."""
    return [t.format(c) for c in categories for t in templates]


def text_embeddings(loaded: LoadedModel, categories: list[str], templates: list[str],
                    batch_size: int = 256, advance: Advance | None = None) -> np.ndarray:
    """[C, dim] float32 unit vectors: ZUTIS's prompt ensemble for each category."""
    prompts = prompts_of(categories, templates)
    return ensemble(encode_texts(loaded, prompts, batch_size, advance), len(categories), len(templates))
