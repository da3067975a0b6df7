"""Train a spec to its stopping rule and write, per seed, a checkpoint and a record.

``train_spec(spec, seed)`` seeds the weights, meta-trains with
:func:`~mlcourse.training.meta_train` (validation, the stopping rule, a resumable run state
under the data folder), tests the best weights on the spec's test episodes and writes:

- ``<results>/<dataset>/<spec>/seed<k>.pt``: the best weights (a ``state_dict``);
- ``<results>/<dataset>/<spec>/seed<k>.json``: the record: the spec and its fingerprint,
  the test results (mean, 95% half-width and every episode's accuracy), the validation
  curve with wall time, the budget used and why training stopped, device, versions, commit.
"""
from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..config import data_dir
from ..data.course import course_data, dataset_name
from ..distributed import is_main, world
from ..device import get_device, seed_everything
from ..episodes import labels_of
from ..evaluation import evaluate
from ..training import meta_train
from .records import load_encoder_from, record_paths, results_dir
from .specs import TEST_SEED, Spec, build_learner

__all__ = ["train_spec", "environment"]


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: torch.device | str) -> dict:
    """Where a record was made: device, threads, library versions, commit."""
    return {"device": str(device), "threads": torch.get_num_threads(), "mlcourse": __version__,
            "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "commit": _commit()}


def train_spec(spec: Spec, seed: int, *, quick: bool = False, out: str | Path | None = None,
               device: torch.device | str | None = None, progress: bool = True) -> dict:
    """Train ``spec`` with training seed ``seed``; write its checkpoint and record; return the record.

    Args:
        spec: The experiment.
        seed: Training seed (initial weights and task stream).
        quick: Train ``spec.quick_steps`` steps and test on 20 episodes per shape (checks the
            path, measures nothing); such records say ``"quick": true``.
        out: Results folder (default :func:`~mlcourse.experiments.records.results_dir`).
        device: Where to train (default :func:`~mlcourse.device.get_device`).
        progress: Show progress bars.
    """
    device = get_device(device)
    dataset = dataset_name()
    background = course_data("background")
    if spec.train_classes is not None:
        background = background.subset_classes(min(spec.train_classes, background.n_classes), seed=seed)
    validation, evaluation = course_data("validation"), course_data("evaluation")
    seed_everything(seed)
    learner = build_learner(spec, n_classes=int(labels_of(background).max()) + 1)
    encoder_from = load_encoder_from(learner, spec, seed, quick=quick, out=out, dataset=dataset)
    budget = spec.quick_steps if quick else spec.max_steps
    val_every = max(1, budget // 2) if quick else spec.val_every
    run_dir = data_dir() / "runs" / ("quick" if quick else "full") / dataset / spec.name
    # a run on another spec's encoder resumes only a run state made on that very encoder
    run_state = run_dir / (f"seed{seed}-encoder-{encoder_from['sha256'][:16]}.pt" if encoder_from else f"seed{seed}.pt")
    t0 = time.perf_counter()
    history = meta_train(learner, background, n_steps=budget, meta_batch_size=spec.meta_batch_size,
                         n_way=spec.n_way, k_shot=list(spec.k_shot) if isinstance(spec.k_shot, tuple) else spec.k_shot,
                         n_query=spec.n_query, outer_lr=spec.outer_lr, optimizer=spec.optimizer, val_set=validation,
                         val_every=val_every, val_episodes=10 if quick else spec.val_episodes,
                         val_shot=max(spec.k_shot) if isinstance(spec.k_shot, tuple) else spec.k_shot,
                         val_options=spec.test_options, patience=spec.patience, seed=seed, device=device,
                         checkpoint=run_state, progress=progress)
    if not is_main():  # under torchrun, rank 0 tests and writes the record (mlcourse.distributed)
        return {"spec": spec.name, "seed": seed, "rank": world()[0]}
    if encoder_from:
        frozen = learner.encoder.encoder.state_dict()
        if any(not torch.equal(v.cpu(), encoder_from["weights"][k]) for k, v in frozen.items()):
            raise RuntimeError(f"{spec.name} seed {seed} resumed a run built on another {encoder_from['spec']} "
                               f"encoder than the one trained now; delete {run_state} and train again")
        encoder_from = {k: v for k, v in encoder_from.items() if k != "weights"}
    n_test = 20 if quick else spec.test_episodes
    tests = {}
    for shape in spec.tests:
        n, k, q = shape
        if n > evaluation.n_classes:
            continue  # a small data set (the tiny build) cannot hold this shape
        r = evaluate(learner, evaluation, n_way=n, k_shot=k, n_query=q, n_episodes=n_test, seed=TEST_SEED,
                     device=device, **spec.test_options)
        tests[spec.test_key(shape)] = {"shape": list(shape), "mean": r.mean, "half_width": r.half_width,
                                       "seed": r.seed, "per_episode": np.round(r.per_episode, 5).tolist()}
    record = {
        "spec": spec.name, "fingerprint": spec.fingerprint(), "settings": spec.as_dict(), "seed": seed,
        "dataset": dataset, "quick": quick, "tests": tests,
        "training": {"steps": int(history.step[-1]) if history.columns.get("step") else 0,
                     "max_steps": budget, "stopped": history.stopped, "best_step": history.best_step,
                     "best_val_acc": history.best_val_acc, "seconds": round(history.seconds, 1),
                     "wall_seconds_with_test": round(time.perf_counter() - t0, 1),
                     "val_step": history.columns.get("val_step", []),
                     "val_acc": [round(v, 5) for v in history.columns.get("val_acc", [])],
                     "val_ci": [round(v, 5) for v in history.columns.get("val_ci", [])],
                     "val_seconds": history.columns.get("val_seconds", []),
                     "step": history.columns.get("step", []),
                     "loss": [round(v, 5) for v in history.columns.get("loss", [])],
                     **({"encoder_from": encoder_from} if encoder_from else {})},
        "environment": environment(device),
    }
    weights, record_file = record_paths(spec.name, seed, root=out if out is not None else results_dir(),
                                        dataset=dataset)
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in learner.state_dict().items()}, weights)
    record_file.write_text(json.dumps(record, indent=1) + "\n")
    return record
