"""Studies: the experiments of the supervised chapters (transfer, multi-task learning, distillation, domain adaptation).

A :class:`Study` is the supervised counterpart of a :class:`~mlcourse.experiments.specs.Spec`:
one declarative experiment with its data, its *arms* (the ways compared: fine-tuning against a
linear probe, a distilled student against one from scratch, DANN against source-only ...),
its budget and its training seeds. Every arm of a seed is trained to convergence (the
supervised loops' :class:`~mlcourse.training.LossPlateau`: the training loss stopped falling;
``max_epochs`` is the budget) and scored image by image on the same held-out test images, so
two arms are compared *paired*. ``mlcourse train STUDY`` writes, per seed, a record
``<results>/<dataset>/<study>/seed<k>.json`` in the format of the specs' records: each arm is a
"test" whose per-episode accuracies are the 0/1 correctness of each test image. Studies ship
records, and of their many networks only the one the book reads: the transfer study's
pre-trained source network (``seed<k>.source.pt``, :func:`load_transfer_source`).

Nothing here chooses a setting on test images: in the transfer study the probe's block and
every SVM's ``C`` are chosen by cross-validation on the training images, each fine-tuning
arm's learning rate on a validation split of them (:func:`validation_split`; the arm is then
retrained on all its training images), and training stops on the training loss.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

__all__ = ["Study", "STUDIES", "ARMS", "run_study", "validation_split", "load_transfer_source"]

ARMS = {
    "transfer": ("linear_svm", "block_probe", "head_only", "fine_tune_all", "from_scratch"),
    "distillation": ("teacher", "scratch", "distilled"),
    "domain": ("source_only", "dann", "coral", "mmd", "target"),
    "multitask": ("from_scratch", "linear_svm", "fine_tune_all", "gradual", "multitask"),
}
"""The arms of each kind of study (for ``transfer`` and ``multitask``, per target task: ``"<target>: <arm>"``)."""

TARGETS = ("similar, small", "similar, large", "different, small", "different, large")
MULTITASK_TARGETS = ("small", "large")
SCRIPT_TESTS = ("script: source only", "script: multitask, small", "script: multitask, large")
"""The multi-task study's tests of the *source* task (which script?), on held-out background images."""


@dataclass(frozen=True)
class Study:
    """One supervised experiment: data, arms, budget, stopping rule, seeds.

    Attributes:
        name: Identifier (``mlcourse train NAME``), also the folder of its records.
        chapter: The lecture that reports it.
        kind: ``"transfer"``, ``"multitask"``, ``"distillation"`` or ``"domain"`` (:data:`ARMS`).
        title: How the book names it.
        options: The kind's settings (learning rates, sizes, temperature ...).
        max_epochs: Budget of every arm; ``patience``: epochs without a falling training loss
            before an arm is converged (:class:`~mlcourse.training.LossPlateau`).
        seeds: Training seeds (initial weights and batch order; the data split is fixed).
        quick_epochs: Epochs per arm of the quick budget (``--quick``, run by the tests).
    """

    name: str
    chapter: int
    kind: str
    title: str
    options: dict = field(default_factory=dict)
    max_epochs: int = 100
    patience: int = 5
    seeds: tuple[int, ...] = (0, 1, 2)
    quick_epochs: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ARMS:
            raise ValueError(f"unknown study kind {self.kind!r}; choose one of {sorted(ARMS)}")

    @property
    def arms(self) -> tuple[str, ...]:
        """The record's test names."""
        if self.kind == "transfer":
            return tuple(f"{t}: {a}" for t in TARGETS for a in ARMS["transfer"])
        if self.kind == "multitask":
            return tuple(f"{t}: {a}" for t in MULTITASK_TARGETS for a in ARMS["multitask"]) + SCRIPT_TESTS
        return ARMS[self.kind]

    def as_dict(self) -> dict:
        """The study as plain JSON-able values."""
        return json.loads(json.dumps(asdict(self)))

    def fingerprint(self) -> str:
        """A hash of everything that defines the study (the seeds, the quick budget and the title excluded)."""
        from ..training import LossPlateau
        from .specs import settings_hash

        rule = LossPlateau()  # the rule's tolerances define the study too
        return settings_hash({**self.as_dict(), "stopping": {"rel_tol": rule.rel_tol, "abs_tol": rule.abs_tol}},
                             drop=("seeds", "quick_epochs", "title"))


STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("transfer-cases", 6, "transfer",
          "The four transfer cases: a Conv4 pre-trained on the background classes, used five ways on each target",
          dict(source_epochs=5, source_lr=3e-3, lr=1e-3, head_lr=1e-2, similar_classes=40,
               # chosen per arm and seed on a validation split of the training images (default first)
               lr_grid=(1e-3, 1e-2, 1e-4), head_lr_grid=(1e-2, 1e-1, 1e-3), C_grid=(0.1, 0.01, 1.0),
               val_fraction=1 / 3), max_epochs=100),
    Study("multitask", 6, "multitask",
          "Inductive transfer and multi-task learning: which script (the source task, on the background images) "
          "and which character (the target task, 3 or 15 images per class of 40 evaluation characters)",
          dict(source_lr=3e-3, source_max_epochs=30, source_train=10, lr=1e-3, head_lr=1e-2, similar_classes=40,
               lr_grid=(1e-3, 1e-2, 1e-4), C_grid=(0.1, 0.01, 1.0), weight_grid=(1.0, 0.3),
               val_fraction=1 / 3), max_epochs=100),
    Study("distillation", 7, "distillation",
          "A Conv4(16) student, distilled (T=4) from a Conv4(64) teacher or trained from scratch; 100 classes, "
          "10 images each", dict(classes=100, n_train=10, teacher_lr=3e-3, lr=1e-3, temperature=4.0, alpha=0.9),
          max_epochs=200),
    Study("domain-digits", 8, "domain",
          "Font digits (labelled) to handwritten digits (unlabelled): source-only, DANN, Deep CORAL, MMD, and "
          "the upper bound trained on target labels", dict(per_digit=1000, target_fit=90,
                                                          weights=dict(source_only=1.0, dann=0.5, coral=1.0, mmd=1.0,
                                                                       target=1.0)),
          max_epochs=40, patience=3),
)}


def _hits(correct: np.ndarray) -> dict:
    per = np.asarray(correct, dtype=np.float64)
    half = 1.959963984540054 * per.std(ddof=1) / np.sqrt(len(per)) if len(per) > 1 else float("nan")
    return {"shape": [int(len(per))], "mean": float(per.mean()), "half_width": float(half), "seed": 0,
            "per_episode": per.astype(int).tolist()}


def _transfer(study: Study, seed: int, epochs: int, patience: int | None, device) -> tuple[dict, dict]:
    from ..backbones import Conv4
    from ..data import course_data
    from ..data.base import split_per_class
    from ..data.digits import handwritten_digits, upsample
    from ..device import seed_everything
    from ..transfer import TransferNet, fine_tune
    from ..transfer.finetune import block_probe, choose_probe

    o = study.options
    background = course_data("background")
    x_src, y_src = background.tensors()
    seed_everything(seed)
    source = TransferNet(Conv4(hidden=32), 32, background.n_classes)
    pre = fine_tune(source, x_src, y_src, epochs=min(o["source_epochs"], epochs), lr=o["source_lr"], batch_size=128,
                    seed=seed, device=device, progress=False)
    digits, labels = handwritten_digits()
    x_dig = torch.tensor(upsample(digits)).float().unsqueeze(1) / 255
    y_dig = torch.tensor(labels)
    train100, test_dig = split_per_class(labels, 100, seed=0)
    train10, _ = split_per_class(labels[train100], 10, seed=0)
    targets = {
        **_similar_targets(o),
        "different, small": (x_dig[train100[train10]], y_dig[train100[train10]], x_dig[test_dig], y_dig[test_dig], 10),
        "different, large": (x_dig[train100], y_dig[train100], x_dig[test_dig], y_dig[test_dig], 10)}
    tests, arms = {}, {}
    for name, (x, y, xt, yt, n) in targets.items():
        for arm in ARMS["transfer"]:
            key = f"{name}: {arm}"
            if arm in ("linear_svm", "block_probe"):  # the top block, or the block chosen with C on training images
                blocks = (4,) if arm == "linear_svm" else (1, 2, 3, 4)
                block, c, cv = choose_probe(source, x, y, blocks, Cs=o["C_grid"], device=device)
                tests[key] = _hits(block_probe(source, block, x, y, xt, yt, C=c, device=device))
                arms[key] = {"stopped": "converged", "block": block, "C": c,
                             "cv": {f"{k}, {v}": round(a, 4) for (k, v), a in cv.items()}}
                continue
            from ..transfer import finetune as ft

            hits, info = _fit_arm(ft, arm, source, x, y, xt, yt, n, o, epochs, patience, seed, device)
            tests[key] = _hits(hits)
            arms[key] = info
    weights = {"source": {k: v.detach().cpu() for k, v in source.state_dict().items()}}
    return tests, arms, weights, {"source": {"epochs": len(pre.loss), "loss": [round(v, 5) for v in pre.loss]}}


def _similar_targets(o: dict) -> dict:
    """The transfer study's two "similar" targets: 40 evaluation characters, 3 or 15 training images each.

    Shared by the transfer and the multi-task studies, so their arms are scored on the same test images.
    """
    from ..data import course_data
    from ..data.base import split_per_class

    evaluation = course_data("evaluation")
    evaluation = evaluation.subset_classes(min(o["similar_classes"], evaluation.n_classes), seed=0)
    x_ev, y_ev = evaluation.tensors()
    train15, test_ev = split_per_class(evaluation.targets, 15, seed=0)
    train3 = np.concatenate([np.flatnonzero(evaluation.targets[train15] == c)[:3] for c in range(evaluation.n_classes)])
    n = evaluation.n_classes
    return {"similar, small": (x_ev[train15[train3]], y_ev[train15[train3]], x_ev[test_ev], y_ev[test_ev], n),
            "similar, large": (x_ev[train15], y_ev[train15], x_ev[test_ev], y_ev[test_ev], n)}


def _multitask(study: Study, seed: int, epochs: int, patience: int | None, device) -> tuple[dict, dict]:
    """Which script (source) and which character (target): sequential transfer against training both at once."""
    from ..backbones import Conv4
    from ..data import course_data
    from ..data.base import split_per_class
    from ..device import seed_everything
    from ..evaluation import correct
    from ..transfer import TransferNet, fine_tune
    from ..transfer import finetune as ft
    from ..transfer.finetune import block_probe, choose_probe
    from ..transfer.multitask import MultiTaskNet, train_multitask

    o = study.options
    background = course_data("background")
    x_bg, _ = background.tensors()
    if len(background.scripts) >= 2:
        y_script, n_scripts = torch.as_tensor(background.script_targets()), len(background.scripts)
    else:  # a build with one script (the tiny one of the quick checks): the characters stand in
        y_script, n_scripts = torch.as_tensor(background.targets), background.n_classes
    fit_s, test_s = split_per_class(background.targets, o["source_train"], seed=0)  # per character: train / test
    xs, ys, xs_test, ys_test = x_bg[fit_s], y_script[fit_s], x_bg[test_s], y_script[test_s]
    source_epochs = min(o["source_max_epochs"], epochs)
    seed_everything(seed)
    source = TransferNet(Conv4(hidden=32), 32, n_scripts)
    pre = fine_tune(source, xs, ys, epochs=source_epochs, lr=o["source_lr"], batch_size=128, seed=seed,
                    patience=patience, device=device, progress=False)
    tests = {"script: source only": _hits(correct(source, xs_test, ys_test, batch_size=256, device=device))}
    arms = {"script: source only": {"stopped": pre.stopped, "epochs": len(pre.loss)}}
    targets = _similar_targets(o)

    def joint(x, y, n, weight):  # a shared trunk trained on both tasks from the same initial weights as the source
        seed_everything(seed)
        net = MultiTaskNet(Conv4(hidden=32), 32, {"script": n_scripts, "character": n})
        h = train_multitask(net, {"script": (xs, ys), "character": (x, y)}, {"script": weight, "character": 1.0},
                            epochs=source_epochs, lr=o["source_lr"], batch_size={"script": 128, "character": 64},
                            seed=seed, patience=patience, device=device, progress=False)
        return net, h

    for size, (x, y, xt, yt, n) in zip(MULTITASK_TARGETS, targets.values()):
        for arm in ARMS["multitask"]:
            key = f"{size}: {arm}"
            if arm == "linear_svm":
                block, c, cv = choose_probe(source, x, y, (4,), Cs=o["C_grid"], device=device)
                tests[key] = _hits(block_probe(source, block, x, y, xt, yt, C=c, device=device))
                arms[key] = {"stopped": "converged", "C": c, "cv": {f"{k}, {v}": round(a, 4) for (k, v), a in cv.items()}}
            elif arm == "multitask":  # the source task's weight chosen on a validation split of the target's images
                fit, val = validation_split(y, o["val_fraction"])
                scores = {}
                for w in o["weight_grid"]:
                    net, _ = joint(x[fit], y[fit], n, w)
                    scores[w] = float(correct(net.for_task("character"), x[val], y[val], batch_size=256,
                                              device=device).mean())
                chosen = max(o["weight_grid"], key=lambda w: scores[w])  # ties: the first (the default, 1)
                net, h = joint(x, y, n, chosen)
                tests[key] = _hits(correct(net.for_task("character"), xt, yt, batch_size=256, device=device))
                arms[key] = {"stopped": h.stopped, "epochs": len(h.loss), "weight": chosen,
                             "validation": {f"{w:g}": round(a, 4) for w, a in scores.items()}}
                tests[f"script: multitask, {size}"] = _hits(correct(net.for_task("script"), xs_test, ys_test,
                                                                   batch_size=256, device=device))
                arms[f"script: multitask, {size}"] = {"stopped": h.stopped, "epochs": len(h.loss)}
            else:
                hits, info = _fit_arm(ft, arm, source, x, y, xt, yt, n, o, epochs, patience, seed, device)
                tests[key], arms[key] = _hits(hits), info
    return tests, arms, {}, {"source": {"epochs": len(pre.loss), "loss": [round(v, 5) for v in pre.loss]}}


def validation_split(y: torch.Tensor, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A fixed split of training images for choosing settings: per class, ``fraction`` of them (at least one) held out.

    Returns:
        ``(fit, validation)`` index arrays into ``y``; every class keeps at least one image in each.
    """
    labels = np.asarray(y)
    rng = np.random.default_rng(0)
    fit, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = max(1, int(round(fraction * len(idx))))
        if len(idx) - k < 1:
            raise ValueError(f"class {c} has {len(idx)} training image(s): at least 2 are needed to hold one out "
                             "for choosing settings")
        val.append(idx[:k])
        fit.append(idx[k:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(val))


def _train_arm(ft, arm, source, x, y, n, lr, head_lr, epochs, patience, seed, device):
    model = ft.clone(source)
    if arm == "from_scratch":
        ft.reinitialise(model, seed)
    ft.unfreeze(model)
    ft.reinit_head(model, n, seed=seed)
    if arm == "head_only":
        ft.freeze(model, len(ft.layer_groups(model)) - 1)
    h = ft.fine_tune(model, x, y, epochs=epochs, lr=lr, head_lr=head_lr, gradual=arm == "gradual", seed=seed,
                     patience=patience, device=device, progress=False)
    return model, h


def _fit_arm(ft, arm, source, x, y, xt, yt, n, o, epochs, patience, seed, device):
    """Choose the arm's learning rate on a validation split of the training images, retrain on all of them, test."""
    from ..evaluation import correct

    setting, grid = ("head_lr", o["head_lr_grid"]) if arm == "head_only" else ("lr", o["lr_grid"])
    fit, val = validation_split(y, o["val_fraction"])
    scores = {}
    for value in grid:
        lrs = {"lr": o["lr"], "head_lr": o["head_lr"], setting: value}
        model, _ = _train_arm(ft, arm, source, x[fit], y[fit], n, lrs["lr"], lrs["head_lr"], epochs, patience, seed,
                              device)
        scores[value] = float(correct(model, x[val], y[val], batch_size=256, device=device).mean())
    chosen = max(grid, key=lambda v: scores[v])  # ties: the first of the grid (the default comes first)
    lrs = {"lr": o["lr"], "head_lr": o["head_lr"], setting: chosen}
    model, h = _train_arm(ft, arm, source, x, y, n, lrs["lr"], lrs["head_lr"], epochs, patience, seed, device)
    return (correct(model, xt, yt, batch_size=256, device=device),
            {"stopped": h.stopped, "epochs": len(h.loss), setting: chosen,
             "validation": {f"{v:g}": round(a, 4) for v, a in scores.items()}})


def _distillation(study: Study, seed: int, epochs: int, patience: int | None, device) -> tuple[dict, dict]:
    from ..backbones import Conv4
    from ..data import course_data
    from ..device import seed_everything
    from ..evaluation import correct
    from ..transfer import TransferNet, fine_tune, train_distilled

    o = study.options
    data = course_data("background")
    data = data.subset_classes(min(o["classes"], data.n_classes), seed=0)
    x, y, x_test, y_test = data.tensors(n_train=o["n_train"], seed=0)
    seed_everything(seed)
    teacher = TransferNet(Conv4(hidden=64), 64, data.n_classes)
    h = fine_tune(teacher, x, y, epochs=epochs, lr=o["teacher_lr"], seed=seed, patience=patience, device=device,
                  progress=False)
    tests = {"teacher": _hits(correct(teacher, x_test, y_test, device=device))}
    arms = {"teacher": {"stopped": h.stopped, "epochs": len(h.loss)}}
    for arm, t in (("scratch", None), ("distilled", teacher)):
        seed_everything(seed)
        student = TransferNet(Conv4(hidden=16), 16, data.n_classes)
        h = train_distilled(student, t, x, y, epochs=epochs, lr=o["lr"], temperature=o["temperature"],
                            alpha=o["alpha"], seed=seed, patience=patience, device=device, progress=False)
        tests[arm] = _hits(correct(student, x_test, y_test, device=device))
        arms[arm] = {"stopped": h.stopped, "epochs": len(h.loss)}
    return tests, arms, {}, {}


def _domain(study: Study, seed: int, epochs: int, patience: int | None, device) -> tuple[dict, dict]:
    from ..data.base import split_per_class
    from ..data.digits import font_digits, handwritten_digits
    from ..device import seed_everything
    from ..evaluation import correct
    from ..transfer.domain import DomainAdaptationNet, train_domain_adaptation

    o = study.options
    xs_np, ys_np = font_digits(o["per_digit"])
    xt_np, yt_np = handwritten_digits()
    fit, held = split_per_class(yt_np, n_train=o["target_fit"], seed=0)

    def to_t(a):
        return torch.tensor(a / 16, dtype=torch.float32)

    xs, ys = to_t(xs_np), torch.tensor(ys_np)
    xt, yt = to_t(xt_np[fit]), torch.tensor(yt_np[fit])  # yt trains only the "target" upper bound
    x_test, y_test = to_t(xt_np[held]), torch.tensor(yt_np[held])
    tests, arms = {}, {}
    for arm in ARMS["domain"]:
        seed_everything(seed)
        net = DomainAdaptationNet()
        h = train_domain_adaptation(net, arm, xs, ys, xt, yt, epochs=epochs, weight=o["weights"][arm],
                                    eval_data=(x_test, y_test), seed=seed, patience=patience, device=device,
                                    progress=False)
        tests[arm] = _hits(correct(net, x_test, y_test, device=device))
        arms[arm] = {"stopped": h.stopped, "epochs": len(h.epoch)}
    return tests, arms, {}, {}


_RUNS = {"transfer": _transfer, "multitask": _multitask, "distillation": _distillation, "domain": _domain}


def run_study(study: Study, seed: int, *, quick: bool = False, out=None, device=None, progress: bool = True) -> dict:
    """Train every arm of ``study`` with training seed ``seed``; write and return its record.

    ``quick`` trains each arm ``study.quick_epochs`` epochs (checks the path, measures
    nothing); such records say ``"quick": true``. ``progress`` is accepted for symmetry with
    :func:`~mlcourse.experiments.runner.train_spec` (arms are short and print nothing).
    """
    from ..data.course import dataset_name
    from ..device import get_device
    from .records import record_paths, results_dir
    from .runner import environment

    device = get_device(device)
    t0 = time.perf_counter()
    epochs = study.quick_epochs if quick else study.max_epochs
    tests, arms, weights, info = _RUNS[study.kind](study, seed, epochs, None if quick else study.patience, device)
    seconds = round(time.perf_counter() - t0, 1)
    stopped = "converged" if all(a["stopped"] == "converged" for a in arms.values()) else "budget"
    record = {
        "spec": study.name, "fingerprint": study.fingerprint(), "settings": study.as_dict(), "seed": seed,
        "dataset": dataset_name(), "quick": quick, "tests": tests,
        "training": {"stopped": stopped, "steps": max((a.get("epochs", 0) for a in arms.values()), default=0),
                     "max_steps": epochs, "unit": "epochs", "seconds": seconds, "arms": arms, **info},
        "environment": environment(device),
    }
    _, record_file = record_paths(study.name, seed, root=out if out is not None else results_dir())
    record_file.parent.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, state in weights.items():  # the networks the book reads, tied to the record by their SHA-256
        path = record_file.with_name(f"seed{seed}.{name}.pt")
        torch.save(state, path)
        files[name] = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    record["training"]["weights"] = files
    record_file.write_text(json.dumps(record, indent=1) + "\n")
    return record


def load_transfer_source(seed: int = 0, *, root=None, dataset: str | None = None):
    """The source network the study ``transfer-cases`` pre-trained with ``seed`` (a :class:`~mlcourse.transfer.finetune.TransferNet`).

    The file must be the one its record names (same SHA-256). A clear error says how to train
    it when it is not there or not that file.
    """
    from ..backbones import Conv4
    from ..transfer import TransferNet
    from .records import record_paths

    _, record_file = record_paths("transfer-cases", seed, root=root, dataset=dataset)
    path = record_file.with_name(f"seed{seed}.source.pt")
    retrain = f"train it with `mlcourse train transfer-cases --seeds {seed}`"
    if not path.exists() or not record_file.exists():
        raise FileNotFoundError(f"no source network of transfer-cases seed {seed} at {path}: {retrain}")
    named = json.loads(record_file.read_text())["training"].get("weights", {}).get("source", {})
    if named.get("sha256") != hashlib.sha256(path.read_bytes()).hexdigest():
        raise ValueError(f"{path} is not the source network its record {record_file.name} names: {retrain}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    source = TransferNet(Conv4(hidden=32), 32, int(state["head.weight"].shape[0]))
    source.load_state_dict(state)
    return source.eval()
