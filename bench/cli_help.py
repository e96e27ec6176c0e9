"""Benchmark: how long ``repo-updater --help`` takes (issue 10, item 3: under 0.3 s), before and
after this work, against the floor of starting the interpreter at all.

    .venv/bin/python bench/cli_help.py [--reps 15]

Each figure is a fresh process (``python -m repo_updater.entrypoints.cli ...``), wall time,
min and median of the reps, measured in one run: the floor (``python -c pass``), then
``--help`` and a nested command's ``--help`` for ``BEFORE`` (exported with git archive) and
this tree. Writes ``bench/results/cli_help.md``.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

from api_common import ROOT, baseline_src, child_env, stats

BEFORE = "beef5e3"  # main before this work
COMMANDS = {
    "floor: python -c pass": ["-c", "pass"],
    "repo-updater --help": ["-m", "repo_updater.entrypoints.cli", "--help"],
    "repo-updater changesets list --help": [
        "-m", "repo_updater.entrypoints.cli", "changesets", "list", "--help",
    ],
}  # fmt: skip


def wall(args: list[str], src: Path | None) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=child_env(src), check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=15, help="processes per figure")
    args = parser.parse_args()
    rows: dict[tuple[str, str], list[float]] = {}
    with baseline_src(BEFORE) as before:
        variants = [("before", before), ("after", None)]
        cases = [(v, src, label, command) for v, src in variants
                 for label, command in COMMANDS.items()
                 if not (label.startswith("floor") and v == "before")]  # fmt: skip
        for _, src, _, command in cases:
            wall(command, src)  # warm the file cache and write the bytecode
        # Interleaved, so that load from other work on the machine falls on every variant.
        for _ in range(args.reps):
            for variant, src, label, command in cases:
                rows.setdefault((variant, label), []).append(wall(command, src))
    floor = stats(next(t for (_, label), t in rows.items() if label.startswith("floor")))[1]
    lines = [
        "# CLI --help start-up time",
        "",
        f"`python bench/cli_help.py --reps {args.reps}`, {platform.python_version()}, "
        f"{platform.machine()}, 2 cores shared with other work. Wall time of a fresh process, "
        "the variants interleaved; "
        f"before: `{BEFORE}`, after: this tree; ratio: median over the floor's median.",
        "",
        "| variant | command | min | median | median / floor |",
        "|---|---|---|---|---|",
    ]
    for (variant, label), times in sorted(rows.items(), key=lambda kv: kv[0][0] != "before"):
        lo, med = stats(times)
        lines.append(f"| {variant} | `{label}` | {lo * 1000:.0f} ms | {med * 1000:.0f} ms | "
                     f"{med / floor:.1f}x |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    (ROOT / "bench" / "results" / "cli_help.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
