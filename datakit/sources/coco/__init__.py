"""COCO converters: 80-thing semantic maps from instances JSON, COCO-Stuff 171, COCO-20K instances.

``make_source({"kind": ...})`` picks one: ``semantic80`` (0 background, 1..80 things by rank of
the COCO id, 255 ignore, rasterised with pycocotools), ``stuff171`` (stuffthingmaps PNGs
remapped to mmseg's 0..170 trainIds) or ``instances20k`` (COCO-20K, see ``twentyk``). Records
carry each image's annotations so workers never reload the JSON.
"""

from __future__ import annotations

from typing import Any

from ..common import totals_report
from ..params import parse_params
from .params import EXPECTED, CocoParams, check_applicable
from .semantic import CocoSemanticSource
from .stuff import CocoStuffSource
from .twentyk import Coco20kSource, report_20k


def make_source(params: dict[str, Any]) -> CocoSemanticSource | CocoStuffSource | Coco20kSource:
    """The recipe entry point: validate params and build the source for ``kind``."""
    p = parse_params(CocoParams, params, "coco")
    check_applicable(p, params)
    if p.kind == "semantic80":
        return CocoSemanticSource(p)
    if p.kind == "stuff171":
        return CocoStuffSource(p)
    return Coco20kSource(p)


def report(build_report: Any, params: dict[str, Any]) -> str:
    """Post-build summary: totals against the published counts (and, for COCO-20K, the eval JSON)."""
    p = parse_params(CocoParams, params, "coco")
    if p.kind == "instances20k":
        return report_20k(build_report, p)
    return totals_report(build_report, EXPECTED[p.kind], f"COCO {p.kind}")


__all__ = ["Coco20kSource", "CocoParams", "CocoSemanticSource", "CocoStuffSource", "make_source", "report"]
