"""Every third-party import of the package is declared, and the core runs on the core alone.

A fresh ``pip install datakit`` (or ``make demo``) has only the core dependencies. An import that
only the test extras bring in breaks every new user while CI stays green, so:

- statically: each import in ``datakit/`` maps to a distribution declared in ``pyproject.toml``,
  in the core or in the extra that owns the module (module-level imports) or in some extra (imports
  inside a function, which run only when that feature is used);
- dynamically: the core commands run in a subprocess where every module of a non-core
  distribution is blocked.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "datakit"

# Which extra a module's top-level imports may come from, by path prefix (the longest match wins).
EXTRA_OF: dict[str, set[str]] = {
    "datakit/clip/": {"clip"},
    "datakit/train/": {"train", "clip"},
    "datakit/stream/": {"stream"},
    "datakit/clip/ray_index.py": {"clip", "ray"},
    "datakit/jobs/executors/ray.py": {"ray"},
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> tuple[str, set[str]]:
    """``datakit[train,remote]`` -> (``datakit``, {train, remote}); ``numpy>=1.24`` -> (``numpy``, {})."""
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\[([^\]]*)\])?", req)
    assert m, req
    extras = {e.strip() for e in (m.group(2) or "").split(",") if e.strip()}
    return _norm(m.group(1)), extras


@lru_cache(maxsize=1)
def declared() -> tuple[set[str], dict[str, set[str]]]:
    """(core distributions, extra -> distributions with self-references expanded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_req_name(r)[0] for r in project["dependencies"]}
    raw = project.get("optional-dependencies", {})

    def expand(extra: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out: set[str] = set()
        for req in raw[extra]:
            name, subs = _req_name(req)
            if name == "datakit":
                for sub in subs - seen:
                    out |= expand(sub, seen | {extra})
            else:
                out.add(name)
        return out

    return core, {extra: expand(extra) for extra in raw}


def module_imports(path: Path) -> list[tuple[str, bool, int]]:
    """(top-level module name, imported at module level?, line) of every absolute import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                out.extend((a.name.split(".")[0], top, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.append((child.module.split(".")[0], top, child.lineno))
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # never runs
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            else:
                visit(child, top)

    visit(tree, True)
    return out


def _extras_for(rel: str) -> set[str]:
    best = max((p for p in EXTRA_OF if rel.startswith(p)), key=len, default=None)
    return EXTRA_OF[best] if best else set()


@lru_cache(maxsize=1)
def _installed() -> dict[str, list[str]]:
    return md.packages_distributions()


def _distributions(module: str) -> set[str]:
    return {_norm(d) for d in _installed().get(module, [])}


def third_party(module: str) -> bool:
    return module not in sys.stdlib_module_names and module not in ("datakit", "__future__")


def test_every_import_is_declared_where_its_module_needs_it():
    core, extras = declared()
    anywhere = core.union(*extras.values())
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        allowed_top = core.union(*(extras[e] for e in _extras_for(rel)))
        for module, top, line in module_imports(path):
            if not third_party(module):
                continue
            dists = _distributions(module)
            if not dists:
                problems.append(f"{rel}:{line}: imports {module!r}, which no installed distribution provides")
            elif top and not dists & allowed_top:
                owner = sorted(_extras_for(rel)) or ["core"]
                problems.append(f"{rel}:{line}: module-level import of {module!r} ({sorted(dists)}) "
                                f"is not in {owner} dependencies")
            elif not dists & anywhere:
                problems.append(f"{rel}:{line}: {module!r} ({sorted(dists)}) is declared nowhere in pyproject.toml")
    assert not problems, "\n".join(problems)


def test_the_analysis_sees_a_missing_declaration(tmp_path):
    """The check above must be able to fail: a module importing an undeclared package is caught."""
    core, _ = declared()
    assert "numpy" in core and "pillow" in core
    fake = tmp_path / "x.py"
    fake.write_text("import yaml\n\ndef f():\n    import sklearn\n")
    found = module_imports(fake)
    assert ("yaml", True, 1) in found and ("sklearn", False, 4) in found
    assert "pyyaml" in _distributions("yaml") and "pyyaml" not in core


@lru_cache(maxsize=1)
def core_closure() -> set[str]:
    """The core distributions and everything they require (what a core-only install contains)."""
    core, _ = declared()
    todo, seen = list(core), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for req in reqs:
            if "extra ==" in req:
                continue
            todo.append(_req_name(req)[0])
    return seen


def blocked_modules() -> list[str]:
    """Top-level modules that only non-core distributions provide."""
    keep = core_closure() | {"pip", "setuptools", "wheel", "pytest", "uv"}
    out = []
    for module, dists in _installed().items():
        if third_party(module) and not {_norm(d) for d in dists} & keep and module.isidentifier():
            out.append(module)
    return sorted(out)


BLOCKER = """
import sys
BLOCKED = set({blocked!r})
class Block:
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not a core dependency (blocked in this test)")
sys.meta_path.insert(0, Block())
sys.argv = ["datakit"] + sys.argv[1:]
from datakit.cli.main import main
main()
"""


@pytest.mark.slow
def test_core_commands_run_with_only_the_core_installed(tmp_path):
    blocked = blocked_modules()
    assert {"torch", "open_clip", "ray", "timm", "s3fs"} <= set(blocked)
    script = tmp_path / "core_only.py"
    script.write_text(BLOCKER.format(blocked=blocked))
    out, grid = tmp_path / "d", tmp_path / "g.png"
    ade = ROOT / "tests" / "fixtures" / "ade20k"
    commands = [
        ["recipes"],
        ["demo", "--out", tmp_path / "demo"],
        ["build", "demo", "--out", out, "-p", "synthetic=8", "-w", "1", "--no-progress"],
        ["convert", "ade150", "--src", ade, "--split", "val", "--out", tmp_path / "ade", "-w", "1", "--no-progress"],
        ["verify", out, "-w", "1"],
        ["stats", out, "-w", "1"],
        ["show", out, "--out", grid],
        ["info", "imagenets", "--subset", "50"],
        ["--help"],
        ["verify", "--help"],
    ]
    for args in commands:
        proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])


HEAVY = ("torch", "open_clip", "ray", "pycocotools", "timm", "datakit.imagenets.submit", "datakit.train",
         "datakit.clip", "datakit.eval", "datakit.stream", "datakit.pipeline")
PROBE = """
import sys
sys.argv = ["datakit"] + sys.argv[1:]
from datakit.cli.main import main
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in {heavy_roots!r} or any(m == h or m.startswith(h + ".") for h in {heavy!r}))
print("LOADED:" + ",".join(heavy))
"""


@pytest.mark.parametrize("args", [["--help"], ["verify", "--help"], ["build", "--help"]])
def test_help_loads_no_heavy_module(tmp_path, args):
    script = tmp_path / "probe.py"
    script.write_text(PROBE.format(heavy=HEAVY, heavy_roots=("torch", "open_clip", "ray", "pycocotools", "timm")))
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("LOADED:")]
    assert line, proc.stderr[-2000:]
    assert line[0] == "LOADED:", f"datakit {' '.join(args)} imported {line[0][7:]}"
