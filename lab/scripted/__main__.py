"""`python -m lab.scripted --case NAME…|all [--out DIR] [--keep-work]` or `--list`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cases import CASES, LIVE_CASES
from .runner import run_cases

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "samples" / "scripted"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.scripted",
                                 description="Run scripted-gateway cases in the lab (root) and write their captures.")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--case", nargs="+", metavar="NAME", help="run case(s) (or 'all') and write captures")
    mode.add_argument("--list", action="store_true", help="list the cases")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output root (default: samples/scripted/)")
    ap.add_argument("--keep-work", action="store_true", help="keep the temporary work directory")
    args = ap.parse_args(argv)
    if args.list:
        for c in CASES.values():
            print(f"{c.name:28} {c.description}")
        for c in LIVE_CASES.values():  # (not in "all": their captures are too big for samples/; the tests run them)
            print(f"{c.name:28} [live only] {c.description}")
        return 0
    return run_cases(args.case, args.out, keep_work=args.keep_work)


if __name__ == "__main__":
    sys.exit(main())
