"""The wheel carries the manifests and recipes the commands read at run time."""

import subprocess
import sys
import zipfile
from pathlib import Path

from datakit import catalog


def test_catalog_finds_packaged_data():
    assert catalog.read_lines("imagenets/categories/ImageNetS_categories_im50.txt")[0].startswith("n")
    assert (catalog.recipes_dir() / "demo.toml").exists()


def test_wheel_ships_manifests_and_recipes(tmp_path):
    root = Path(__file__).resolve().parent.parent
    # the build backend itself (hatchling, in the test extra): uv environments have no pip
    build = f"from hatchling.build import build_wheel; print(build_wheel({str(tmp_path)!r}))"
    proc = subprocess.run([sys.executable, "-c", build], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("datakit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in ["datakit/_data/manifests/imagenets/categories/ImageNetS_categories_im919.txt",
                "datakit/_data/manifests/zutis/clip_prompt_templates_85.txt",
                "datakit/_data/manifests/demo/voc/2007_000032.png",
                "datakit/_data/recipes/demo.toml",
                "datakit/_data/configs/imagenets919-fcn-mae-base.toml",
                "datakit/cli/main.py"]:
        assert rel in names, rel
    assert not any(n.startswith("tests/") for n in names)
