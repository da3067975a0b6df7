"""Command line: ``mlcourse train SPEC``, ``mlcourse predict --support DIR IMAGE``, ``mlcourse grade NOTEBOOK``,
``mlcourse gradebook merge``,
``mlcourse exercises``, ``mlcourse data``.

``grade`` and ``exercises`` need the grading extra (``pip install "mlcourse[grading]"``) and
work on a course folder (``--course DIR``, by default the current folder); the grading
subpackage is imported only when one of them runs.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

GRADING_EXTRA = "pip install 'mlcourse[grading]'"
# third-party modules of the grading extra that each command needs
GRADING_NEEDS = {"grade": ("nbformat", "nbclient", "jupyter_client", "ipykernel", "psutil"),
                 "exercises": ("nbgrader", "nbformat")}


def _grading(command: str):
    """The :mod:`mlcourse.grading` subpackage, or None (after saying what to install) without the extra."""
    missing = [m for m in GRADING_NEEDS[command] if importlib.util.find_spec(m) is None]
    if not missing:
        try:
            from . import grading
            return grading
        except ImportError as err:  # a dependency that is there but broken, or one not listed above
            if not err.name or err.name.split(".")[0] == "mlcourse":
                raise
            missing = [err.name]
    print(f"mlcourse {command} needs the grading extra: {GRADING_EXTRA} (missing: {', '.join(missing)})",
          file=sys.stderr)
    return None


def _grade(args: argparse.Namespace) -> int:
    grading = _grading("grade")
    if grading is None:
        return 2
    from .grading.autograde import default_hidden, resolve_isolation

    limits = grading.Limits(cell_timeout=args.cell_timeout, timeout=args.timeout, memory_mb=args.memory_mb,
                            disk_mb=args.disk_mb)
    path = Path(args.path)
    solutions = Path(args.solutions) if args.solutions else None
    try:
        course = grading.course_folder(args.course or Path.cwd(), solutions=solutions)
        shard = grading.parse_shard(args.shard) if args.shard else None
        if shard and not path.is_dir():
            raise ValueError("--shard splits a folder of submissions; give the folder, not one notebook")
        if path.is_dir():
            results = grading.grade_class(path, course, out=args.out, assignment=args.assignment,
                                          solutions=solutions, workers=args.workers, limits=limits,
                                          isolation=args.isolation, regrade=args.regrade, progress=not args.quiet,
                                          shard=shard, warm=not args.cold)
            out = Path(args.out).resolve()
            statuses: dict[str, int] = {}
            for r in results:
                statuses[r.status] = statuses.get(r.status, 0) + 1
            print(f"{len(results)} submissions: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
            print(f"gradebook: {out / 'gradebook.csv'} (summary: gradebook.json, gradebook.png)\n"
                  f"feedback:  {out / 'feedback'}")
            if shard:
                print(f"shard {shard[0]}/{shard[1]}: merge every shard's folder with `mlcourse gradebook merge`")
            if args.json:
                Path(args.json).write_text("[" + ",\n".join(r.to_json() for r in results) + "]\n")
            return 0
        mode, why = resolve_isolation(args.isolation)
        from .config import data_dir

        limits.isolation, limits.data = mode, str(data_dir())
        if mode == "none":
            print(f"mlcourse grade: isolation none: {why}", file=sys.stderr)
        limits.hide = default_hidden(course, solutions)
    except (ValueError, RuntimeError) as err:
        print(f"mlcourse grade: {err}", file=sys.stderr)
        return 2
    result = grading.grade(path, course, assignment=args.assignment, solutions=solutions,
                           feedback_dir=Path(args.feedback) if args.feedback else None, limits=limits)
    print(result.summary())
    if args.json:
        Path(args.json).write_text(result.to_json())
    return 0 if result.status == "graded" else 2


def _gradebook(args: argparse.Namespace) -> int:
    grading = _grading("grade")
    if grading is None:
        return 2
    try:
        results = grading.merge_gradebooks(args.folders, args.out)
    except ValueError as err:
        print(f"mlcourse gradebook merge: {err}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    print(f"{len(results)} submissions from {len(args.folders)} shard folders\n"
          f"gradebook: {out / 'gradebook.csv'} (summary: gradebook.json, gradebook.png)\nfeedback:  {out / 'feedback'}")
    return 0


def _exercises(args: argparse.Namespace) -> int:
    grading = _grading("exercises")
    if grading is None:
        return 2
    try:
        paths = grading.generate_exercises(Path(args.course or Path.cwd()),
                                           Path(args.solutions) if args.solutions else None,
                                           Path(args.out) if args.out else None)
    except (ValueError, RuntimeError) as err:
        print(f"mlcourse exercises: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from .data.fontglot import load_fontglot

    arrays = load_fontglot(args.preset, seed=args.seed)
    print(f"FontGlot ({args.preset}): {arrays['images'].shape[0]} classes x {arrays['images'].shape[1]} drawers")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .experiments import select_specs

    try:
        specs = select_specs(args.specs)
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError as err:
        print(f"mlcourse train: {err}", file=sys.stderr)
        return 2
    from .experiments.records import needs_training

    if args.list:
        for spec in specs:
            budget = f"{spec.max_steps} steps" if hasattr(spec, "max_steps") else f"{spec.max_epochs} epochs per arm"
            print(f"{spec.name:<20} lecture {spec.chapter}  {spec.title}; seeds {list(spec.seeds)}, at most {budget}")
            for seed in seeds if seeds is not None else spec.seeds:
                why = needs_training(spec.name, seed, root=args.out)
                print(f"{'':<20}   seed {seed}: {'trained, stands' if why is None else 'to train: ' + why}")
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from .distributed import init_from_env, is_main
    from .experiments.runner import train_spec
    from .experiments.studies import Study, run_study

    try:
        if init_from_env(args.device):  # under torchrun: the ranks split every meta-batch (mlcourse.distributed)
            studies = [spec.name for spec in specs if isinstance(spec, Study)]
            if studies:
                raise ValueError(f"{', '.join(studies)} train on one process: run them without torchrun")
        for spec in specs:
            for seed in seeds if seeds is not None else spec.seeds:
                if args.stale and needs_training(spec.name, seed, root=args.out) is None:
                    continue  # its record stands for the spec as it is now
                run = run_study if isinstance(spec, Study) else train_spec
                record = run(spec, seed, quick=args.quick, out=args.out, device=args.device, progress=not args.quiet)
                if not is_main():
                    continue  # rank 0 tests, writes and reports
                t = record["training"]
                tests = ", ".join(f"{k} {100 * v['mean']:.1f} ± {100 * v['half_width']:.1f}%"
                                  for k, v in record["tests"].items())
                print(f"{spec.name} seed {seed}: {t['stopped']} after {t['steps']} {t.get('unit', 'steps')}, "
                      f"{t['seconds']:.0f} s; "
                      f"{tests}", flush=True)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"mlcourse train: {err}", file=sys.stderr)
        return 2
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .experiments import SPECS, load_learner
    from .predict import load_image, load_support_folder, predict_images

    if args.learner not in SPECS:
        print(f"mlcourse predict: unknown learner {args.learner!r}; choose one of: {', '.join(SPECS)}",
              file=sys.stderr)
        return 2
    try:
        support = load_support_folder(args.support, k_shot=args.shots)
        queries = [load_image(p) for p in args.images]
        learner = load_learner(args.learner, args.seed, device=args.device or "cpu")
        predictions = predict_images(learner, support, queries)
    except (ValueError, FileNotFoundError) as err:
        print(f"mlcourse predict: {err}", file=sys.stderr)
        return 2
    print(f"{args.learner} seed {args.seed}, {len(support.classes)}-way {support.k_shot}-shot support from "
          f"{args.support}", file=sys.stderr)
    for path, p in zip(args.images, predictions):
        others = "  ".join(f"{c} {v:.2f}" for c, v in sorted(p.probabilities.items(), key=lambda kv: -kv[1]))
        print(f"{path}: {p.label}    ({others})")
    if args.json:
        import json

        Path(args.json).write_text(json.dumps([{"image": str(path), "label": p.label,
                                                "probabilities": p.probabilities}
                                               for path, p in zip(args.images, predictions)], indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``mlcourse`` command with ``argv`` (default: the process's arguments); returns the exit code."""
    course_help = ("the course folder, holding solutions/, exercises/ and nbgrader_config.py "
                   "(default: the current folder)")
    parser = argparse.ArgumentParser(prog="mlcourse", description="Tools of the mlcourse course.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train experiment specs to their stopping rule; write checkpoints and records",
                       description="Train each spec (by name, by chapter number, or 'all') for each of its seeds "
                                   "until validation stops progressing or the budget is spent. Resumable: run "
                                   "the same command again after an interruption. Writes <out>/<dataset>/<spec>/"
                                   "seed<k>.pt and .json (default out: the results shipped with the package).")
    t.add_argument("specs", nargs="+", help="spec names, chapter numbers (e.g. 3) or 'all'")
    t.add_argument("--seeds", help="comma-separated training seeds (default: the spec's, e.g. 0,1,2)")
    t.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    t.add_argument("--out", metavar="DIR", help="results folder (default: $MLCOURSE_RESULTS or the shipped one)")
    t.add_argument("--quick", action="store_true", help="a few steps per spec: checks the path, measures nothing")
    t.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    t.add_argument("--list", action="store_true",
                   help="list the selected specs and whether each seed's record stands, and exit")
    t.add_argument("--stale", action="store_true",
                   help="train only the seeds with no record, or one made with other settings or a smaller budget")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_train)
    p = sub.add_parser("predict", help="classify your own images from a support folder with a trained learner",
                       description="Classify each IMAGE by a support set: SUPPORT holds one sub-folder per class "
                                   "with its example images. Images are made grey and 28x28; dark ink on light "
                                   "paper is inverted to the course's light-on-dark.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="query images to classify")
    p.add_argument("--support", required=True, metavar="DIR", help="folder of class sub-folders of images")
    p.add_argument("--learner", default="protonet-1shot", help="a trained spec (default: protonet-1shot)")
    p.add_argument("--seed", type=int, default=0, help="which training seed's weights (default 0)")
    p.add_argument("--shots", type=int, help="examples per class (default: as many as the smallest class has)")
    p.add_argument("--device", help="cpu (default), cuda, mps")
    p.add_argument("--json", metavar="FILE", help="also write the predictions as JSON to FILE")
    p.set_defaults(func=_predict)
    g = sub.add_parser("grade", help="autograde a submitted notebook, or a folder of them (a class)",
                       description="Grade one notebook, or every submission in a folder (FOLDER/<student>.ipynb "
                                   "or nbgrader's FOLDER/<student>/<assignment>/*.ipynb) in parallel. "
                                   "Submissions are never modified.")
    g.add_argument("path", help="a student's .ipynb, or a folder of submissions")
    g.add_argument("--json", metavar="FILE", help="also write the result(s) as JSON to FILE")
    g.add_argument("--assignment", help="exercise name, e.g. 01_episodes (default: guessed per notebook)")
    g.add_argument("--course", metavar="DIR", help=course_help)
    g.add_argument("--solutions", metavar="DIR", help="folder of instructor notebooks (default: COURSE/solutions)")
    g.add_argument("--feedback", help="one notebook: folder for the feedback HTML (default: ./feedback)")
    g.add_argument("--out", default="grades", help="a folder: where gradebook.csv, feedback/ and results/ go")
    g.add_argument("--workers", type=int, help="a folder: submissions graded at a time (default: CPU cores)")
    g.add_argument("--cell-timeout", type=float, default=300, help="seconds per cell before it is interrupted")
    g.add_argument("--timeout", type=float, default=1200, help="seconds per notebook before its kernel is killed")
    g.add_argument("--memory-mb", type=float, default=4096, help="memory per kernel before it is killed")
    g.add_argument("--disk-mb", type=float, default=1024, help="files a kernel may write before it is killed")
    g.add_argument("--isolation", choices=["auto", "bwrap", "namespace", "none"], default="auto",
                   help="bwrap: bubblewrap's allow-list sandbox (no network, private /tmp, another user when root); "
                        "namespace: a mount namespace that hides the solutions (root on Linux); either fails if "
                        "unavailable; auto: the strongest available")
    g.add_argument("--regrade", action="store_true", help="a folder: grade again unchanged submissions")
    g.add_argument("--shard", metavar="I/N", help="a folder: grade only the students of shard I of N (split by "
                                                    "name); join the shards with `mlcourse gradebook merge`")
    g.add_argument("--cold", action="store_true", help="a folder: start every kernel from scratch (by default, "
                                                        "as root with bwrap, kernels are forked from one process "
                                                        "that imported ipykernel, NumPy and PyTorch once)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_grade)
    gb = sub.add_parser("gradebook", help="gradebooks: merge the outputs of sharded grading")
    gb_sub = gb.add_subparsers(dest="action", required=True)
    m = gb_sub.add_parser("merge", help="merge the output folders of `mlcourse grade FOLDER --shard I/N`",
                          description="Read every shard's output folder and write one gradebook, the written "
                                      "answers, the feedback pages and the class summary to --out. Refuses, saying "
                                      "what to run, if a shard is missing or unfinished. Merging again gives the "
                                      "same files.")
    m.add_argument("folders", nargs="+", metavar="DIR", help="the shards' --out folders")
    m.add_argument("--out", required=True, metavar="DIR", help="where the merged gradebook goes")
    m.set_defaults(func=_gradebook)
    e = sub.add_parser("exercises", help="regenerate student notebooks from solutions/ with nbgrader")
    e.add_argument("--course", metavar="DIR", help=course_help)
    e.add_argument("--solutions", metavar="DIR", help="folder of instructor notebooks (default: COURSE/solutions)")
    e.add_argument("--out", metavar="DIR", help="folder for the student notebooks (default: COURSE/exercises)")
    e.set_defaults(func=_exercises)
    d = sub.add_parser("data", help="build (or check) the FontGlot cache")
    d.add_argument("--preset", default="full", choices=["full", "tiny"])
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_data)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
