#!/usr/bin/env python3
"""Mean ± std of the runs in a folder of `stagewise train` outputs named PLAN-sSEED.

    python3 tools/summarize_runs.py runs/worked-example [--json]
"""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main() -> None:
    root = Path(sys.argv[1])
    groups = defaultdict(list)
    for summary in sorted(root.glob("*-s*/summary.json")):
        plan = summary.parent.name.rsplit("-s", 1)[0]
        groups[plan].append(json.loads(summary.read_text()))

    def ms(xs):
        return (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)

    rows = []
    for plan, runs in groups.items():
        row = {"plan": plan, "seeds": len(runs)}
        # The run record, schema 1 (docs/run-format.md).
        for key, value in (
            ("final_test_acc", lambda r: r["final_eval"]["accuracy"]),
            ("best_test_acc", lambda r: r["best_eval"]["accuracy"]),
            ("steps", lambda r: r["updates"]),
            ("wall_seconds", lambda r: r["wall_seconds"]),
        ):
            row[key] = ms([value(r) for r in runs])
        rows.append(row)
    if "--json" in sys.argv:
        print(json.dumps(rows, indent=2))
        return
    print("| plan | seeds | final test acc | best test acc | optimizer steps | wall s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        f, b, s, w = (r[k] for k in ("final_test_acc", "best_test_acc", "steps", "wall_seconds"))
        print(f"| {r['plan']} | {r['seeds']} | {f[0]:.4f} ± {f[1]:.4f} | {b[0]:.4f} ± {b[1]:.4f}"
              f" | {s[0]:.0f} | {w[0]:.0f} ± {w[1]:.0f} |")


if __name__ == "__main__":
    main()
