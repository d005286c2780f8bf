"""`python -m samples.lab [--out DIR] SCENARIO… | all | --list`."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .netns import LabError
from .scenarios import SCENARIOS

DEFAULT_OUT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m samples.lab", description=__doc__)
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
    if list_only or not names:
        for sc in SCENARIOS.values():
            print(f"{sc.name:15} {sc.description}")
        return 0 if list_only else 2
    if names == ["all"]:
        names = list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"[lab] unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("[lab] the lab needs root (it creates network namespaces and runs ocserv); run it as root",
              file=sys.stderr)
        return 1
    from .runner import run_scenario  # after the root check: needs lxml, cryptography

    # SIGTERM / SIGHUP end a run as Ctrl-C does, also outside the Lab context (while the work directory is
    # prepared, or the outputs written): the clean-up in run_scenario's finally blocks then runs too
    old = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    failed = []
    try:
        for name in names:
            try:
                run_scenario(name, out, keep_work=keep_work)
            except LabError as e:
                print(f"[lab] {name}: FAILED: {e}", file=sys.stderr)
                failed.append(name)
            except KeyboardInterrupt:
                print(f"[lab] {name}: interrupted; namespaces and processes cleaned up", file=sys.stderr)
                return 130
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 1 if failed else 0


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
