"""What every benchmark script shares: its command line (--quick, --json) and the goals table."""
import argparse
import json
from typing import Callable, Dict, List, Optional, Tuple

Goals = Dict[str, Tuple[str, float]]  # ratio name -> ("<=" or ">=", goal)


def goal_lines(results: dict, goals: Goals, digits: int = 3) -> List[str]:
    """A table of each ratio, its goal and whether this run met it."""
    lines = ["", f"  {'ratio':34s} {'value':>7s}  goal    met"]
    for key, (op, goal) in goals.items():
        value = results[key]
        met = value <= goal if op == "<=" else value >= goal
        lines.append(f"  {key:34s} {value:7.{digits}f}  {op} {goal:<4}  {'yes' if met else 'NO'}")
    return lines


def run_cli(description: str, run: Callable[[bool], dict], render: Callable[[dict], str],
            argv: Optional[List[str]] = None, add_arguments: Callable = None,
            after: Callable[[dict, argparse.Namespace], None] = None, run_takes_args: bool = False) -> int:
    """Parses --quick/--json (plus a script's own flags), runs, prints the table, writes the JSON.

    run gets args.quick, or the whole parsed namespace when run_takes_args (for scripts with their own flags).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny module and data: checks the script runs.")
    parser.add_argument("--json", help="Also write the results to this JSON file.")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    results = run(args) if run_takes_args else run(args.quick)
    if args.json:  # before rendering: a long run's figures must survive a rendering bug
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    print(render(results))
    if after:
        after(results, args)
    return 0
