"""``python -m fer_lightning.report PATH [PATH ...]``: the ablation report of the runs under
the paths (a multirun folder, a run folder, or a parent of several such as ``logs/``).

Writes ``report.md``, ``runs.csv``, ``report.json`` and PNG plots to ``--out`` (default
``<PATH>/report/``) and prints the tables; ``--format json`` prints report.json to stdout
instead and writes nothing unless ``--out`` is given. See docs/reporting.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from fer_lightning.report.build import METRICS, Options, build_report
from fer_lightning.report.discover import ReportError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fer_lightning.report", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="multirun folder, run folder, or a parent of several")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text: write the report folder and print tables (default); "
                             "json: print report.json to stdout")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <PATH>/report, or ./report for "
                             "several paths)")
    parser.add_argument("--metric", choices=METRICS, default="acc",
                        help="metric of the verdicts and plots (all three are in the tables)")
    parser.add_argument("--split", choices=("test", "val"), default=None,
                        help="compare on this split (default: test, val when no run has test)")
    parser.add_argument("--baseline", action="append", default=[], metavar="AXIS=VALUE",
                        help="the value an axis' effects are measured from (default: the "
                             "root config's default option, else none/the smallest value)")
    parser.add_argument("--effect", type=float, default=1.0, metavar="POINTS",
                        help="effect size of the 'seeds needed' estimate (default 1 point)")
    parser.add_argument("--ignore", action="append", default=[], metavar="KEY",
                        help="config key (and keys below it) never to treat as an axis")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return parser.parse_args(argv)


def _baselines(pairs: list[str]) -> dict[str, str]:
    baselines = {}
    for pair in pairs:
        axis, sep, value = pair.partition("=")
        if not sep or not axis:
            raise ReportError(f"--baseline expects AXIS=VALUE, got {pair!r}")
        baselines[axis] = value
    return baselines


def default_out_dir(paths: list[str]) -> Path:
    """``<PATH>/report`` for one path (its folder for a file), else ``./report``."""
    if len(paths) == 1:
        path = Path(paths[0])
        return (path if path.is_dir() else path.parent) / "report"
    return Path("report")


def write_report(report: dict, out_dir: Path, plots: bool = True) -> None:
    """Every output file of ``report`` into ``out_dir``."""
    from fer_lightning.report.outputs import report_json, report_markdown, write_runs_csv

    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    if plots:
        from fer_lightning.report.plots import write_plots

        written = write_plots(report, out_dir)
    (out_dir / "report.md").write_text(report_markdown(report, written))
    (out_dir / "report.json").write_text(report_json(report))
    write_runs_csv(report, out_dir / "runs.csv")


def main(argv: list[str] | None = None) -> int:
    """Build, write and print the report; 1 with a message on bad input."""
    args = parse_args(argv)
    try:
        options = Options(metric=args.metric, split=args.split, effect_points=args.effect,
                          baselines=_baselines(args.baseline), ignore=tuple(args.ignore))
        report = build_report(args.paths, options)
    except (ReportError, ValueError) as error:
        print(f"report: {error}", file=sys.stderr)
        return 1
    if args.format == "json":
        from fer_lightning.report.outputs import report_json

        if args.out is not None:
            write_report(report, args.out, plots=not args.no_plots)
        print(report_json(report))
        return 0
    out_dir = args.out or default_out_dir(args.paths)
    write_report(report, out_dir, plots=not args.no_plots)
    from fer_lightning.report.outputs import print_report

    print_report(report, Console(), out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
