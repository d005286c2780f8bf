"""`python -m lab [--out DIR] SCENARIO… | all | --list` (also `acflow lab` in a checkout)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .runs import run_each
from .scenarios import SCENARIOS

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "samples"  # the checkout's samples/


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    ap.add_argument("scenarios", nargs="*", help="scenario names, or 'all'")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output root (default: samples/)")
    ap.add_argument("--list", action="store_true", help="list the scenarios")
    ap.add_argument("--keep-work", action="store_true", help="keep the temporary work directory")
    ap.add_argument("--refresh-facts", action="store_true",
                    help="recompute facts.json of existing samples from their logs (no lab run, no root)")
    args = ap.parse_args(argv)
    if args.refresh_facts:
        from .facts import refresh

        for name in (list(SCENARIOS) if args.scenarios in ([], ["all"]) else args.scenarios):
            if (args.out / name / "facts.json").exists():
                refresh(args.out / name)
                print(f"[lab] {name}: facts.json refreshed")
        return 0
    return run(args.scenarios, args.out, list_only=args.list, keep_work=args.keep_work)


def run(names: list[str], out: Path, *, list_only: bool = False, keep_work: bool = False) -> int:
    """Run the scenarios `names` (or "all") into `out`/<scenario>/: 0 all written, 1 a scenario failed (or bad
    names, or not root), 2 no names, 130 interrupted."""
    if list_only or not names:
        for sc in SCENARIOS.values():
            print(f"{sc.name:15} {sc.description}")
        if list_only:  # the lab's other samples, made by other commands
            from .cuts import CUTS
            from .scripted.cases import CASES

            print("\nscripted-gateway cases (python -m lab.scripted --case NAME; samples/scripted/NAME):")
            for c in CASES.values():
                print(f"  {c.name:28} {c.description}")
            print("\ncut captures, made from committed samples (python -m lab.cuts NAME; samples/cut/NAME):")
            for c in CUTS.values():
                print(f"  {c.name:28} {c.description}")
        return 0 if list_only else 2

    def run_one(name: str) -> bool:
        from .runner import run_scenario  # after the root check: needs lxml, cryptography

        run_scenario(name, out, keep_work=keep_work)
        return True

    return run_each(names, SCENARIOS, run_one, tag="lab")


if __name__ == "__main__":
    sys.exit(main())
