"""What every benchmark script shares: its command line (--quick, --json) and the goals table."""
import argparse
import json
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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


def int_list(text: str) -> List[int]:
    """"5,10,20" -> [5, 10, 20] (a command-line list)."""
    return [int(v) for v in text.split(",") if v.strip()]


def name_list(known: Sequence[str], what: str) -> Callable[[str], Tuple[str, ...]]:
    """An argparse type: "a,b" -> ("a", "b"), each one of `known` (else an error naming them)."""
    def parse(text: str) -> Tuple[str, ...]:
        names = tuple(v.strip() for v in text.split(",") if v.strip())
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what}(s) {unknown}; known: {', '.join(known)}")
        return names
    return parse


def with_overrides(params, assignments: Sequence[str]):
    """TrainingParams `params` with NAME=VALUE assignments applied, typed and checked as the Trainer checks its
    custom_config. Raises SystemExit naming the known names for a bad assignment."""
    import dataclasses  # pylint: disable=import-outside-toplevel
    values = dataclasses.asdict(params)
    for assignment in assignments:
        name, _, text = assignment.partition("=")
        if name not in values or not text:
            raise SystemExit(f"--param {assignment!r}: expected NAME=VALUE with NAME one of {sorted(values)}")
        values[name] = text if values[name] is None or isinstance(values[name], str) else type(values[name])(
            text.lower() in ("1", "true", "yes") if isinstance(values[name], bool) else text)
    return type(params).from_custom_config(values)


def add_quality_arguments(parser: argparse.ArgumentParser, unit: str, columns: Sequence[str], pool_cap: int,
                          data_dir: str, splits: Sequence[str] = ("dev", "test")) -> None:
    """The flags both quality benchmarks (image and text) take; `unit` names what k counts ("images", "texts")."""
    parser.add_argument("--split", choices=splits, default="test",
                        help="test: score on the test pools (reports); dev: score on the dev pools (tuning)")
    parser.add_argument("--ks", type=int_list, help=f"training {unit} per class, e.g. 5,10,20")
    parser.add_argument("--seeds", type=int_list, help="e.g. 0,1,2 (the dev split adds 1000)")
    parser.add_argument("--test-per-class", type=int, help=f"pool cap per class (default {pool_cap})")
    parser.add_argument("--data-dir", help=f"prepared datasets (default {data_dir})")
    parser.add_argument("--plot", help=f"Also plot the scores vs {unit} per class into this PNG file.")
    parser.add_argument("--columns", type=name_list(columns, "column"),
                        help=f"comma-separated subset of {', '.join(columns)} (default: all); e.g. stage1,final "
                             "for a quicker --split dev tuning run")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="Override a training parameter (TrainingParams field) for the hubtfx columns, e.g. "
                             "stage2_significance=1 with --split dev to score every stage-2 candidate; for --split "
                             "dev only (reports use the defaults).")


def plot_when_asked(plot: Callable[[dict, str], None]) -> Callable[[dict, argparse.Namespace], None]:
    """run_cli's `after`: draws the results to --plot's file when one was given."""
    def after(results: dict, args: argparse.Namespace) -> None:
        if args.plot:
            plot(results, args.plot)
    return after
