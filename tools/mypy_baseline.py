"""Run mypy on the package and compare with the committed baseline, which may only shrink.

A type error that is not in ``tools/mypy-baseline.txt`` fails (exit 1) and is printed. Errors are
compared without line numbers (file, message, code), so moving code does not churn the baseline.
When errors were fixed, ``--update`` rewrites the baseline; it refuses to add new ones.

    python tools/mypy_baseline.py            # check (make test runs this)
    python tools/mypy_baseline.py --update   # shrink the baseline after fixing errors
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "tools" / "mypy-baseline.txt"
LINE = re.compile(r"^(?P<file>[^:]+):\d+(?::\d+)?: error: (?P<msg>.*)$")


def current_errors() -> Counter[str]:
    proc = subprocess.run([sys.executable, "-m", "mypy", "datakit"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"mypy did not run: {proc.stderr.strip() or proc.stdout.strip()}")
    found: Counter[str] = Counter()
    for line in proc.stdout.splitlines():
        m = LINE.match(line)
        if m:
            found[f"{m['file']}: {m['msg']}"] += 1
    return found


def read_baseline() -> Counter[str]:
    if not BASELINE.exists():
        return Counter()
    return Counter(line for line in BASELINE.read_text().splitlines() if line.strip())


def main(argv: list[str]) -> int:
    now, base = current_errors(), read_baseline()
    new = now - base
    if new and BASELINE.exists():
        print(f"mypy: {sum(new.values())} type error(s) not in the baseline:")
        for line in sorted(new.elements()):
            print(f"  {line}")
        return 1
    fixed = base - now
    if "--update" in argv:
        BASELINE.write_text("".join(f"{line}\n" for line in sorted(now.elements())))
        print(f"mypy baseline: {sum(now.values())} known error(s), {sum(fixed.values())} removed")
    elif fixed:
        print(f"mypy: {sum(fixed.values())} baseline error(s) are fixed; run `python tools/mypy_baseline.py --update`")
    else:
        print(f"mypy: no new type errors ({sum(now.values())} in the baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
