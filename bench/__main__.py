"""``python -m bench [NAME ...]`` (``nox -s bench``): run the benchmarks and print their figures.

Each benchmark compares implementations side by side in one run (ratios, not absolute times, are the
figures to trust on a shared machine) and reports peak RSS. Names: preprocess, metrics, model, infer, export,
train, geo, speed.
Results are recorded by hand in docs/performance.md with the command that produced them.
"""

from __future__ import annotations

import importlib
import json
import sys

BENCHMARKS = ("preprocess", "metrics", "model", "infer", "export", "train", "geo", "speed")


def main(argv: list[str]) -> int:
    """Run the named benchmarks (default: all) as their own scripts' ``main``/``run``."""
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        try:
            module = importlib.import_module(f"bench.bench_{name}")
        except ModuleNotFoundError as exc:
            print(f"{name}: skipped ({exc})", file=sys.stderr)
            continue
        print(f"== {name} ==", flush=True)
        entry = getattr(module, "main", None)
        if entry is not None:
            entry([])
        else:
            print(json.dumps(module.run(), indent=2, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
