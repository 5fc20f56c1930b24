"""The layout figures of issue 21: modules per package, the longest import chain inside
``recommender``, and the five largest files. Run from the repository root:

    .venv/bin/python -m benchmarks.layout
"""

from __future__ import annotations

import collections
import functools
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, "tests")
from test_imports import import_graph  # noqa: E402


def main() -> None:
    graph = import_graph()

    def package(module: str) -> str:
        parts = module.split(".")[1:]
        return parts[0] if parts and Path("recommender", parts[0]).is_dir() else "(top)"

    per = collections.Counter(package(m) for m in graph)
    print("modules per package:", dict(sorted(per.items())), "total", len(graph))

    @functools.lru_cache(None)
    def longest(module: str) -> tuple[str, ...]:
        best: tuple[str, ...] = (module,)
        for target in graph[module]:
            chain = (module, *longest(target))
            if len(chain) > len(best):
                best = chain
        return best

    chain = max((longest(m) for m in graph), key=len)
    print(f"longest import chain: {len(chain)} modules")
    print("  " + " -> ".join(m.removeprefix("recommender.") for m in chain))
    listed = subprocess.run(["git", "ls-files", "*.py"], capture_output=True, text=True)
    files = [f for f in listed.stdout.split() if f.startswith("recommender/") or f == "app.py"]
    sizes = sorted(((len(Path(f).read_text().splitlines()), f) for f in files), reverse=True)
    print("five largest:", ", ".join(f"{f} {n}" for n, f in sizes[:5]))


if __name__ == "__main__":
    main()
