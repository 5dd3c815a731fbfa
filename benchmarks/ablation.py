"""The README's ablation answer: multi-seed grids on the synthetic faces, then the report.

    python -m benchmarks.ablation                      # both grids, 15-30 min on 2 quiet cores
    python -m benchmarks.ablation --grids mba          # one of them
    python -m benchmarks.ablation --dry-run            # print the commands only
    python -m benchmarks.ablation --readme README.md   # also fill README's ablation block

Each grid is one `python -m fer_lightning -m ...` multirun, as a user launches it (its runs
one after the other in one process), into logs/ablation/<time>/<grid>/. Its report goes to
benchmarks/ablation_results/<grid>/ (report.md, runs.csv, report.json, PNGs); the commands, wall
times and verdicts to benchmarks/ablation_results/README.md and benchmarks/RESULTS.md, and with
--readme between the `ablation-report` markers of that file. A benchmark: never part of
the test suite.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from fer_lightning.report.outputs import cell_rows, md_table, primary_effects

from .run import RESULTS, machine

HERE = Path(__file__).resolve().parent
OUT = HERE / "ablation_results"

#: One budget for every run: 2,000 training faces x 5 epochs, val on 500 faces per epoch,
#: test on 1,000 (one face = 0.1 point). Time for both grids on 2 quiet cores: ~13 min from
#: the throughput in benchmarks/RESULTS.md, up to ~30 min extrapolated from the slowest
#: cell (head=fc, landmarks=groundtruth, loss=focal) measured at 3,000 faces on a shared
#: machine (5 min 26 s with one torch thread, test acc 0.45). mba runs first: its 6 runs
#: show the pace within minutes.
TRAIN_SIZE, EPOCHS = 2000, 5


def budget(train_size: int = TRAIN_SIZE, epochs: int = EPOCHS) -> list[str]:
    """The overrides every run of every grid gets."""
    return ["trainer=cpu", f"data.source.train_size={train_size}", "data.source.val_size=500",
            "data.source.test_size=1000", f"trainer.max_epochs={epochs}",
            "callbacks.progress_bar=null", "callbacks.model_summary=null"]


#: grid name -> (title, the grid's own overrides).
GRIDS = {
    "mba": ("mba (heatmap encoding, the paper's single FC layer): landmarks, 3 seeds",
            ["model=mba", "head=fc", "head.hidden=[]", "landmarks=none,groundtruth",
             "seed=1,2,3"]),
    "mini_xception": ("mini_xception: landmarks x head x loss, 3 seeds",
                      ["model=mini_xception", "landmarks=none,groundtruth", "head=gap,fc",
                       "loss=ce,focal", "seed=1,2,3"]),
}
BEGIN = "<!-- ablation-report:begin"
END = "<!-- ablation-report:end -->"


def grid_command(name: str, sweep_dir: Path, overrides: list[str] | None = None) -> list[str]:
    """The multirun of grid ``name`` writing its runs to ``sweep_dir``."""
    return [sys.executable, "-m", "fer_lightning", "-m", f"hydra.sweep.dir={sweep_dir}",
            f"task_name=ablation_{name}", *GRIDS[name][1], *(overrides or budget())]


def shown(command: list[str]) -> str:
    """A command as a user types it."""
    return shlex.join(["python", *command[1:]])


def run_grid(name: str, sweep_dir: Path, overrides: list[str]) -> float:
    """Run the grid, then its report; the grid's wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(grid_command(name, sweep_dir, overrides), check=True)
    seconds = time.perf_counter() - start
    subprocess.run([sys.executable, "-m", "fer_lightning.report", str(sweep_dir),
                    "--out", str(OUT / name)], check=True)
    return seconds


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def grid_markdown(name: str, sweep_dir: Path, seconds: float, image_root: str,
                  overrides: list[str] | None = None) -> str:
    """The README section of one grid: command, wall time, verdicts, cells, effect plot."""
    report = json.loads((OUT / name / "report.json").read_text())
    [block] = report["blocks"]
    runs = block["n_runs"]
    lines = [f"#### {GRIDS[name][0]}", "",
             f"{runs} runs in {minutes(seconds)} on {machine()} "
             f"(`python -m benchmarks.ablation --grids {name}`):", "", "```bash",
             shown(grid_command(name, sweep_dir, overrides)).replace(str(sweep_dir),
                                                                    "logs/ablation/" + name),
             f"python -m fer_lightning.report logs/ablation/{name}", "```", ""]
    lines += [f"- {effect['verdict']}" for effect in primary_effects(block)]
    left_out = len(report["incomplete"])
    note = f" ({left_out} runs left out: see there)" if left_out else ""
    full = f"{image_root}/{name}/report.md"
    lines += ["", *md_table(*cell_rows(block)),
              f"![{name} effects]({image_root}/{name}/block1-effects.png)", "",
              f"Full report (effects on every metric, interactions, per-class deltas, "
              f"curves): [{full}]({full}){note}.", ""]
    return "\n".join(lines)


def fill_readme(readme: Path, body: str) -> None:
    """Replace what stands between the ablation-report markers of ``readme``."""
    text = readme.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?-->\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{readme}: no '{BEGIN} ... -->' ... '{END}' block to fill")
    marker = f"{BEGIN} (filled by `python -m benchmarks.ablation --readme README.md`) -->"
    readme.write_text(pattern.sub(lambda _: f"{marker}\n{body}\n{END}", text, count=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", nargs="+", choices=list(GRIDS), default=list(GRIDS))
    parser.add_argument("--logs", type=Path, default=Path("logs/ablation"),
                        help="where the run folders go (a new timestamped folder inside)")
    parser.add_argument("--readme", type=Path, default=None,
                        help="fill this file's ablation-report block with the results")
    parser.add_argument("--train-size", type=int, default=TRAIN_SIZE,
                        help="training faces per run (the README's budget: %(default)s)")
    parser.add_argument("--epochs", type=int, default=EPOCHS,
                        help="epochs per run (the README's budget: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    overrides = budget(args.train_size, args.epochs)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d_%H-%M-%S")
    sweep_dirs = {name: (args.logs / stamp / name).resolve() for name in args.grids}
    if args.dry_run:
        for name in args.grids:
            print(shown(grid_command(name, sweep_dirs[name], overrides)))
        return
    sections = []
    for name in args.grids:
        seconds = run_grid(name, sweep_dirs[name], overrides)
        sections.append(grid_markdown(name, sweep_dirs[name], seconds,
                                      "benchmarks/ablation_results", overrides))
        print(f"{name}: {minutes(seconds)}", flush=True)
    body = "\n".join(sections)
    (OUT / "README.md").write_text(
        "# Ablation grids on the synthetic faces\n\n"
        + body.replace("benchmarks/ablation_results/", ""))
    # RESULTS.md sits in benchmarks/: its links start one floor lower.
    results_body = body.replace("benchmarks/ablation_results/", "ablation_results/")
    with RESULTS.open("a") as handle:
        handle.write(f"\n## {stamp} UTC — `python -m benchmarks.ablation --grids "
                     f"{' '.join(args.grids)}`\n\n{results_body}\n")
    if args.readme is not None:
        fill_readme(args.readme, body)


if __name__ == "__main__":
    main()
