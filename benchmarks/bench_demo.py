"""PQ of ``modise demo`` against training steps and seconds (issue 15: a deterministic demo).

Each row is a whole demo run with ``--steps N`` (same seed, so the numbers repeat on any machine;
only the seconds depend on the machine and its load). Run on an idle machine:

    python benchmarks/bench_demo.py --steps 500,1000,1500 [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="500,1000,1500", help="comma-separated step counts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from modise.engine.demo import run_demo

    rows = []
    for steps in (int(s) for s in args.steps.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            m = run_demo(Path(tmp) / "demo", minutes=120, seed=args.seed, progress=False, steps=steps)
        best = m["best"]
        rows.append({"steps": m["train"]["global_step"], "train_s": m["train"]["seconds"], "wall_s": m["demo"]["seconds"],
                     "t": best["threshold"], "pq": best["pq"], "rq": best["rq"], "sq": best["sq"], "ap": best.get("ap"),
                     "dice": m.get("dice")})
        if not args.json:
            r = rows[-1]
            print(f"steps {r['steps']:5d}  train {r['train_s']:6.0f} s  wall {r['wall_s']:6.0f} s  "
                  f"PQ {r['pq']:.1f}  RQ {r['rq']:.1f}  SQ {r['sq']:.1f}  AP {r['ap'] or float('nan'):.1f}  "
                  f"Dice {r['dice'] or float('nan'):.1f}  @ IoU {r['t']:.2f}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
