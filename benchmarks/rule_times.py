"""Where a workflow run's time goes: every rule's benchmark file (results/<run>/benchmarks/, one per job), summed
per rule, with each rule's peak memory, and the critical path's share of the wall time.

    python benchmarks/rule_times.py [results/<run>/benchmarks] [--log .snakemake/log/<run>.snakemake.log]

Job seconds add up over jobs that ran side by side; with ``--log`` (a Snakemake run log) the wall time from
the first job's start to the last job's end is printed too, so the two can be compared.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import re
from collections import defaultdict
from pathlib import Path


def rule_of(path: Path, root: Path) -> str:
    """The rule a benchmark file belongs to: its first path part (``pretrain/ecr.tsv`` -> pretrain)."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def read_benchmarks(root: Path) -> dict[str, dict]:
    per_rule: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "s": 0.0, "max_rss_mb": 0.0})
    for path in sorted(root.rglob("*.tsv")):
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        row = rows[-1]  # one row per repeat (benchmark: repeat(...)); the last
        r = per_rule[rule_of(path, root)]
        r["jobs"] += 1
        r["s"] += float(row["s"])
        rss = row.get("max_rss", "NA")
        if rss not in ("", "NA", "-"):
            r["max_rss_mb"] = max(r["max_rss_mb"], float(rss))
    return dict(per_rule)


def wall_seconds(log: Path) -> float | None:
    stamps = [datetime.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
              for m in re.finditer(r"^\[(\w+ \w+ +\d+ [\d:]+ \d+)\]$", log.read_text(errors="replace"), re.M)]
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?", default="results/toy/benchmarks")
    ap.add_argument("--log", help="a Snakemake run log, for the wall time")
    args = ap.parse_args()
    rules = read_benchmarks(Path(args.root))
    if not rules:
        raise SystemExit(f"no benchmark files under {args.root}")
    total = sum(r["s"] for r in rules.values())
    print(f"{'rule':28s} {'jobs':>4s} {'seconds':>8s} {'share':>6s} {'peak MB':>8s}")
    for name, r in sorted(rules.items(), key=lambda kv: -kv[1]["s"]):
        print(f"{name:28s} {r['jobs']:4d} {r['s']:8.1f} {r['s'] / total:6.1%} {r['max_rss_mb']:8.0f}")
    print(f"{'all jobs':28s} {sum(r['jobs'] for r in rules.values()):4d} {total:8.1f}")
    if args.log:
        wall = wall_seconds(Path(args.log))
        if wall:
            print(f"wall time {wall:.0f} s: the jobs' seconds are {total / wall:.2f}x the wall time "
                  "(jobs side by side)")


if __name__ == "__main__":
    main()
