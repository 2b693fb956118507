"""Retrieval bookkeeping: ``--dedup`` (none = ZUTIS, best = one category per image) and the report.

ZUTIS keeps an image in every category list that retrieved it and labels it with the *last*
such category; the report counts those images, the pairs of categories that share them, and
the score distribution of each list, so a user can see what ``--dedup best`` would change.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import InputError

DEDUP_MODES = ("none", "best")


@dataclass(frozen=True)
class Selection:
    """Final lists: per category, global rows and scores, best first."""

    rows: list[np.ndarray]
    scores: list[np.ndarray]


def select(scores: np.ndarray, rows: np.ndarray, n: int, mode: str) -> Selection:
    """``none``: each category's top n (ZUTIS). ``best``: greedy by score over all candidates, so each
    image goes to the category where it scores highest among those with room left."""
    if mode == "none":
        return Selection([rows[c, :n] for c in range(rows.shape[0])], [scores[c, :n] for c in range(rows.shape[0])])
    if mode != "best":
        raise InputError(f"--dedup must be one of {DEDUP_MODES}, not {mode!r}")
    n_cat, k = rows.shape
    cat = np.repeat(np.arange(n_cat), k)
    flat_s, flat_r = scores.ravel(), rows.ravel()
    order = np.lexsort((flat_r, cat, -flat_s))  # score desc, then category order, then row
    taken: set[int] = set()
    picked: list[list[int]] = [[] for _ in range(n_cat)]
    for i in order:
        c, r = int(cat[i]), int(flat_r[i])
        if r in taken or len(picked[c]) >= n:
            continue
        taken.add(r)
        picked[c].append(int(i))
    out_r = [flat_r[np.array(p, np.int64)] if p else np.zeros(0, np.int64) for p in picked]
    out_s = [flat_s[np.array(p, np.int64)] if p else np.zeros(0, np.float32) for p in picked]
    return Selection(out_r, out_s)


def zutis_labels(sel: Selection) -> dict[int, int]:
    """Row -> label id (1-based category index) as ZUTIS assigns it: the last category wins."""
    label: dict[int, int] = {}
    for c, rows in enumerate(sel.rows):
        for r in rows.tolist():
            label[r] = c + 1
    return label


def _stats(values: np.ndarray) -> dict[str, float]:
    """Quantiles and mean of one category's scores."""
    if values.size == 0:
        return {}
    q = np.quantile(values.astype(np.float64), [0.0, 0.1, 0.5, 0.9, 1.0])
    return {"min": float(q[0]), "p10": float(q[1]), "median": float(q[2]), "p90": float(q[3]), "max": float(q[4]),
            "mean": float(values.mean())}


def build_report(categories: Sequence[str], sel: Selection, sources: Sequence[str], n: int,
                 mode: str, top_pairs: int = 20) -> dict[str, Any]:
    """Counts, overlaps and score distributions of the final lists (``sources`` = source of each listed entry)."""
    members: dict[int, list[int]] = {}
    score_at: dict[tuple[int, int], float] = {}
    for c, (rows, scores) in enumerate(zip(sel.rows, sel.scores)):
        for r, s in zip(rows.tolist(), scores.tolist()):
            members.setdefault(r, []).append(c)
            score_at[(c, r)] = s
    shared = {r: cs for r, cs in members.items() if len(cs) > 1}
    pairs: Counter[tuple[int, int]] = Counter()
    for cs in shared.values():
        for i in range(len(cs)):
            for j in range(i + 1, len(cs)):
                pairs[(cs[i], cs[j])] += 1
    per_cat = []
    pos = 0
    for c, name in enumerate(categories):
        rows = sel.rows[c]
        src = Counter(sources[pos:pos + len(rows)])
        pos += len(rows)
        per_cat.append({
            "category": name, "label": c + 1, "count": int(len(rows)), "short": int(len(rows) < n),
            "shared": int(sum(1 for r in rows.tolist() if r in shared)),
            "sources": dict(sorted(src.items())), "scores": _stats(sel.scores[c]),
        })
    relabelled = sum(1 for r, cs in shared.items() if cs[-1] != max(cs, key=lambda c: score_at[(c, r)]))
    return {
        "n": n, "dedup": mode, "categories": len(categories),
        "listed": int(sum(len(r) for r in sel.rows)), "unique_images": len(members),
        "images_in_several_categories": len(shared),
        "zutis_last_label_not_best": relabelled,
        "top_shared_pairs": [{"a": categories[a], "b": categories[b], "images": k}
                             for (a, b), k in pairs.most_common(top_pairs)],
        "per_category": per_cat,
    }


def report_markdown(report: dict[str, Any]) -> str:
    """A human-readable summary of ``build_report``'s output."""
    lines = [
        f"# Retrieval report (n={report['n']}, dedup={report['dedup']})", "",
        f"- categories: {report['categories']}; listed entries: {report['listed']}; unique images: {report['unique_images']}",
        f"- images retrieved by several categories: {report['images_in_several_categories']} "
        f"(ZUTIS labels them with the last category; for {report['zutis_last_label_not_best']} that is not their "
        "best-scoring one)",
        "", "## Most shared category pairs", "", "| a | b | images |", "|---|---|---|",
    ]
    lines += [f"| {p['a']} | {p['b']} | {p['images']} |" for p in report["top_shared_pairs"]]
    lines += ["", "## Per category", "", "| label | category | count | shared | top score | median | last score | sources |",
              "|---|---|---|---|---|---|---|---|"]
    for c in report["per_category"]:
        s = c["scores"]
        srcs = ", ".join(f"{k}: {v}" for k, v in c["sources"].items())
        lines.append(f"| {c['label']} | {c['category']} | {c['count']} | {c['shared']} | {s.get('max', float('nan')):.4f} "
                     f"| {s.get('median', float('nan')):.4f} | {s.get('min', float('nan')):.4f} | {srcs} |")
    return "\n".join(lines) + "\n"
