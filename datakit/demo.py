"""``datakit demo``: build the embedded sample, verify it, draw it, and say where everything went."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .pipeline.build import BuildOptions, BuildReport, build
from .shards.verify import VerifyReport, verify
from .inspect.show import GridOptions, show
from .sources.demo import DemoSource


@dataclass
class DemoResult:
    out: Path
    build: BuildReport
    verify: list[VerifyReport]
    pictures: list[Path] = field(default_factory=list)


def run_demo(out: str | Path, workers: int = 2, synthetic: int = 200, progress: bool = True) -> DemoResult:
    out = Path(out)
    opts = BuildOptions(shard_size=64, workers=workers, overwrite=True, progress=progress)
    report = build(DemoSource(synthetic), out, None, opts)
    checks = verify(str(out), workers=1)
    pictures = [
        show(str(out / split), out / f"{split}.png", GridOptions(count=8 if split == "synthetic" else 6, cols=4, thumb=200))
        for split in ("synthetic", "ade150", "voc")
    ]
    return DemoResult(out, report, checks, pictures)
