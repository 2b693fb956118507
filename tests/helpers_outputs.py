"""Real built outputs of every recipe that tests/fixtures can feed, built once per test session.

``built(name, factory)`` returns the output folder of recipe ``name`` (through the recipe TOML and
its source module, as ``datakit convert`` does), built under pytest's session temp folder. Inputs
are the real fixture files; where no real file exists (CoCA, COCO-Stuff maps, ImageNet-S) they
follow the documented layouts, as the converter tests do.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from datakit.pipeline import BuildOptions, build
from datakit.pipeline.recipes import load_recipe, make_source

FIX = Path(__file__).parent / "fixtures"
OPTS = BuildOptions(workers=1, progress=False, shard_size=2)
ADE847_NAMES = ("ADE_train_00016869", "ADE_train_00016900", "ADE_train_00016964")
IN21K_WNIDS = ("n00005787", "n00006484", "n00007846")   # the first classes of LarvSeg's IN11K list


def write_jpeg(path: Path, w: int, h: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=90)


def _coco2017(src: Path) -> dict[str, Any]:
    """The real 448263 annotations (a crowd region gives 255) with a generated JPEG, plus mmpose's 4 real photos."""
    (src / "annotations").mkdir(parents=True)
    shutil.copytree(FIX / "coco" / "mmpose_person" / "val2017", src / "val2017")
    write_jpeg(src / "val2017" / "000000448263.jpg", 320, 240)
    obj = json.loads((FIX / "coco" / "instances_val2017_448263.json").read_text())
    person = json.loads((FIX / "coco" / "mmpose_person" / "person_keypoints_val2017_subset.json").read_text())
    top = max(a["id"] for a in obj["annotations"]) + 1
    obj["images"] += person["images"]
    obj["annotations"] += [{**a, "id": top + i} for i, a in enumerate(person["annotations"])]
    (src / "annotations" / "instances_val2017.json").write_text(json.dumps(obj))
    return {"src": str(src), "splits": ["val"]}


def _cocostuff171(src: Path) -> dict[str, Any]:
    rows = json.loads((Path(__file__).parents[1] / "manifests" / "classes" / "coco_stuff171.json").read_text())
    values = np.array(sorted(r["png_value"] for r in rows) + [255], dtype=np.uint8)
    maps = src / "stuffthingmaps_trainval2017" / "val2017"
    maps.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.resize(np.roll(values, 7 * i), (24, 32)), "L").save(maps / f"00000000000{i}.png")
        write_jpeg(src / "val2017" / f"00000000000{i}.jpg", 32, 24, seed=i)
    return {"src": str(src), "splits": ["val"]}


def _coco20k(src: Path) -> dict[str, Any]:
    (src / "annotations").mkdir(parents=True)
    obj = json.loads((FIX / "coco" / "instances_val2017_448263.json").read_text())
    obj["images"][0]["file_name"] = "COCO_train2014_000000448263.jpg"
    (src / "annotations" / "instances_train2014.json").write_text(json.dumps(obj))
    write_jpeg(src / "train2014" / "COCO_train2014_000000448263.jpg", 320, 240)
    (src / "list.txt").write_text("train2014/COCO_train2014_000000448263.jpg\n")
    return {"src": str(src), "filelist": str(src / "list.txt")}


def _voc2012(src: Path) -> dict[str, Any]:
    root = src / "VOC2012"
    shutil.copytree(FIX / "voc", root)
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    ids = ("2007_000032", "2007_000033")
    (sets / "train.txt").write_text("\n".join(ids) + "\n")
    sal = root / "saliency_supervised_model"
    sal.mkdir()
    for sid in ids:
        raw = np.array(Image.open(FIX / "voc" / "SegmentationClass" / f"{sid}.png"))
        Image.fromarray(np.where((raw > 0) & (raw < 255), 255, 0).astype(np.uint8), "L").save(sal / f"{sid}.png")
    return {"src": str(root), "splits": ["train"], "saliency": "saliency_supervised_model"}


def _coca(src: Path) -> dict[str, Any]:
    for i, cat in enumerate(("Accordion", "Yellow duck", "alarm clock")):
        yy, xx = np.mgrid[:30, :40]
        disc = (np.hypot(yy - 15, xx - 20 - i) < 9).astype(np.uint8) * 255
        (src / "binary" / cat).mkdir(parents=True)
        Image.fromarray(disc, "L").save(src / "binary" / cat / f"{i}.png")
        write_jpeg(src / "image" / cat / f"{i}.jpg", 40, 30, seed=i)
    return {"src": str(src)}


def _imagenet21k(src: Path) -> dict[str, Any]:
    photos = sorted((FIX / "coco" / "mmpose_person" / "val2017").glob("*.jpg"))
    for i, wnid in enumerate(IN21K_WNIDS):
        for n in range(2 if i < 2 else 1):
            (src / wnid).mkdir(parents=True, exist_ok=True)
            shutil.copy(photos[(i + n) % len(photos)], src / wnid / f"{wnid}_{n}.JPEG")
    return {"src": str(src)}


def _imagefolder(src: Path) -> dict[str, Any]:
    """ImageNet-1k style class folders (class list = sorted folder names), real VOC photos."""
    for i, p in enumerate(sorted((FIX / "voc" / "JPEGImages").glob("*.jpg"))):
        (src / f"n0000000{i}").mkdir(parents=True)
        shutil.copy(p, src / f"n0000000{i}" / p.name)
    return {"src": str(src)}


def _pass(src: Path) -> dict[str, Any]:
    for i, p in enumerate(sorted((FIX / "voc" / "JPEGImages").glob("*.jpg"))):
        (src / f"part{i}").mkdir(parents=True)
        shutil.copy(p, src / f"part{i}" / p.name)
    return {"src": str(src)}


def _ade150(src: Path) -> dict[str, Any]:
    return {"src": str(FIX / "ade20k"), "splits": ["val"]}


def _ade847(src: Path) -> dict[str, Any]:
    return {"src": str(FIX / "ade20k_full"), "splits": ["train"]}


def _imagenets(src: Path) -> dict[str, Any]:
    from imagenets_tree import make_tree, write_annotations

    tree = make_tree(src / "imagenet", subset=50, extra_train=1, with_semi=False)
    ann = write_annotations(src / "ann", 50, as_zip=False)
    return {"subset": 50, "imagenet": str(tree.root), "annotations": str(ann), "splits": ["validation"]}


INPUTS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "coco2017": _coco2017, "cocostuff171": _cocostuff171, "coco20k": _coco20k, "ade150": _ade150,
    "ade847": _ade847, "voc2012": _voc2012, "coca": _coca, "imagefolder": _imagefolder, "imagenet21k": _imagenet21k,
    "pass": _pass, "imagenets": _imagenets,
}
RECIPES = ("demo", *INPUTS)


def built(name: str, factory: Any) -> Path:
    """The output folder of recipe ``name``, built once per session under pytest's temp folder."""
    root = Path(factory.getbasetemp()) / "recipe-outputs" / name
    if (root / "done").exists():
        return root / "out"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if name == "demo":
        params: dict[str, Any] = {"synthetic": 6}
    else:
        params = INPUTS[name](root / "src")
    source = make_source(load_recipe(name), params)
    splits = params.get("splits") if name != "imagenets" else None
    build(source, root / "out", splits, OPTS)
    (root / "done").write_text("ok")
    return root / "out"
