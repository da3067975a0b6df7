"""Experiments as code: one declarative :class:`Spec` per result the book reports.

A spec names the learner and its settings, the data, the episode shape of training, the
budget and the stopping rule, the training seeds and the test episodes. Its
:meth:`~Spec.fingerprint` is a hash of all of that but the budget: a shipped record whose
fingerprint is not the spec's current one was made by other settings, and the tests say so.

The budget (``max_steps``) is checked apart, by :meth:`Spec.budget_problem`: the training
loop does not depend on its budget until it ends, so a run that converged before its budget is
the same run under any larger one. Raising a budget keeps the records that converged and asks
to retrain only the runs that ran out of it.

Every spec is tested on the same episodes (``TEST_SEED``), so two specs tested at the same
shape are compared *paired*, episode by episode.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from torch import nn

__all__ = ["Spec", "SPECS", "TEST_SEED", "build_learner", "select_specs", "conv4_classifier"]

TEST_SEED = 1000  # the test episodes of every spec
STANDARD_TESTS = ((5, 1, 15), (5, 5, 15), (20, 1, 5), (20, 5, 5))  # (n_way, k_shot, n_query)


@dataclass(frozen=True)
class Spec:
    """One experiment: what is trained, on what, for how long, with which seeds, tested how.

    Attributes:
        name: Identifier (``mlcourse train NAME``), also the folder of its records.
        chapter: The lecture that reports it.
        learner: Kind of learner (a key of :func:`build_learner`).
        options: The learner's settings.
        title: How the book names it.
        n_way, k_shot, n_query, meta_batch_size: Episode shape and tasks per step in training
            (``k_shot`` may be a tuple of shot counts, one drawn per step).
        outer_lr, optimizer: The outer optimizer.
        max_steps: Budget: the most outer steps.
        val_every, val_episodes, patience: The stopping rule of
            :func:`~mlcourse.training.meta_train`: validate every ``val_every`` steps on
            ``val_episodes`` episodes; stop after ``patience`` validations in a row without
            progress beyond the interval of the last one that progressed.
        seeds: Training seeds (weights and task stream).
        train_classes: Train on this many background classes only (``None``: all).
        tests: Test shapes ``(n_way, k_shot, n_query)``, each on ``test_episodes`` episodes
            drawn from ``TEST_SEED`` on the evaluation split.
        test_options: Passed to ``predict`` at test time (e.g. ``inner_steps``).
        quick_steps: Steps of the quick budget (``mlcourse train --quick``, run by the tests).
    """

    name: str
    chapter: int
    learner: str
    title: str
    options: dict = field(default_factory=dict)
    n_way: int = 5
    k_shot: int | tuple[int, ...] = 1
    n_query: int = 15
    meta_batch_size: int = 1
    outer_lr: float = 1e-3
    optimizer: str = "adam"
    max_steps: int = 6000
    val_every: int = 250
    val_episodes: int = 200
    patience: int = 3
    seeds: tuple[int, ...] = (0, 1, 2)
    train_classes: int | None = None
    tests: tuple[tuple[int, int, int], ...] = STANDARD_TESTS[:2]
    test_episodes: int = 600
    test_options: dict = field(default_factory=dict)
    quick_steps: int = 6

    def as_dict(self) -> dict:
        """The spec as plain JSON-able values (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    def fingerprint(self) -> str:
        """A hash of everything that defines the experiment but its seeds and budgets (see :meth:`budget_problem`)."""
        return settings_hash(self.as_dict(), drop=("seeds", "quick_steps", "title", "max_steps"))

    def budget_problem(self, training: dict) -> str | None:
        """Why a full-budget record's ``training`` does not stand for this spec's budget, or ``None``.

        A run that converged after at most ``max_steps`` steps stands (more steps would not have
        changed it); a run stopped by its budget stands only if that budget is this spec's.
        """
        steps, stopped, budget = training.get("steps"), training.get("stopped"), training.get("max_steps")
        if stopped == "converged" and isinstance(steps, int) and steps <= self.max_steps:
            return None
        if stopped == "budget" and budget == self.max_steps:
            return None
        if stopped == "budget":
            return f"it ran out of a budget of {budget} steps, and the spec's budget is now {self.max_steps}"
        return f"it stopped after {steps} steps ({stopped or 'unknown'}), over the spec's budget of {self.max_steps}"

    def test_key(self, shape: tuple[int, int, int]) -> str:
        n, k, q = shape
        return f"{n}-way {k}-shot"


def conv4_classifier(n_way: int = 5, hidden: int = 32) -> nn.Sequential:
    """The MAML family's network: Conv4 with batch statistics only (``track_running_stats=False``) and a linear head."""
    from ..backbones import Conv4

    return nn.Sequential(Conv4(hidden=hidden, track_running_stats=False, channels_last=False), nn.Linear(hidden, n_way))


def build_learner(spec: Spec, *, n_classes: int | None = None) -> nn.Module:
    """A freshly initialised learner of ``spec`` (seed the generator first for reproducible weights).

    ``n_classes``: the classes of the training data, which a learner that pretrains a classifier
    over them (``"pretrained"``: Baseline, Baseline++, SimpleShot) needs; the others ignore it.
    """
    from ..backbones import Conv4

    o = dict(spec.options)
    kind = spec.learner
    if kind == "protonet":
        from ..metric import PrototypicalNetwork
        return PrototypicalNetwork(Conv4(**o))
    if kind == "matching":
        from ..metric import MatchingNetwork
        scale = o.pop("scale", 1.0)
        return MatchingNetwork(Conv4(**o), scale=scale)
    if kind == "pretrained":
        from ..transfer import PretrainedClassifier
        if n_classes is None:
            raise ValueError(f"spec {spec.name!r} pretrains a classifier over the training classes: "
                             "pass build_learner(spec, n_classes=<classes of the background set>)")
        return PretrainedClassifier(Conv4(hidden=o.pop("hidden", 64)), n_classes, **o)
    if kind == "siamese":
        from ..metric import SiameseNetwork
        return SiameseNetwork(Conv4(**o))
    if kind == "relation":
        from ..metric import RelationNetwork
        return RelationNetwork(**o)
    if kind == "anil":
        from ..optimization import ANIL
        return ANIL(conv4_classifier(spec.n_way, o.pop("hidden", 32)), **o)
    if kind == "protomaml":
        from ..optimization import ProtoMAML
        return ProtoMAML(Conv4(hidden=o.pop("hidden", 32), track_running_stats=False, channels_last=False), **o)
    if kind in ("maml", "metasgd", "reptile"):
        from ..optimization import MAML, MetaSGD, Reptile
        net = conv4_classifier(spec.n_way, o.pop("hidden", 32))
        return {"maml": MAML, "metasgd": MetaSGD, "reptile": Reptile}[kind](net, **o)
    if kind in ("lstm", "averaging", "attention"):
        from ..backbones import FrozenEncoder
        from ..blackbox import AttentionLearner, AveragingLearner, RecurrentLearner
        source = o.pop("encoder_from", None)  # a spec whose trained encoder is reused, frozen
        if source is not None:
            if source not in SPECS or SPECS[source].learner not in ("protonet", "siamese"):
                raise ValueError(f"spec {spec.name!r}: encoder_from must name a ProtoNet or Siamese spec, got {source!r}")
            encoder = FrozenEncoder(build_learner(SPECS[source]).backbone)
        else:
            encoder = Conv4(hidden=o.pop("encoder_hidden", 32))
        learner = {"lstm": RecurrentLearner, "averaging": AveragingLearner, "attention": AttentionLearner}[kind]
        return learner(n_way=spec.n_way, encoder=encoder, **o)
    raise ValueError(f"spec {spec.name!r}: unknown learner kind {kind!r}")


_MAML = dict(max_steps=6000, val_every=250, val_episodes=100, meta_batch_size=4, tests=STANDARD_TESTS[:2],
             test_options={"inner_steps": 3})
_BLACKBOX = dict(k_shot=(1, 2, 3, 4, 5), n_query=5, meta_batch_size=8, max_steps=6000, val_every=250,
                 val_episodes=100)

SPECS: dict[str, Spec] = {s.name: s for s in [
    # Lecture 2: metric learners. ProtoNet at the shot it is tested at, and with fewer training classes.
    Spec("protonet-1shot", 2, "protonet", "ProtoNet, trained 5-way 1-shot", tests=STANDARD_TESTS),
    Spec("protonet-5shot", 2, "protonet", "ProtoNet, trained 5-way 5-shot", k_shot=5, tests=STANDARD_TESTS),
    # ProtoNet on the 32-filter Conv4 of the MAML family and the black boxes: the reference of the comparison
    # of every family for learners of that width (the others use 64 filters).
    Spec("protonet32-1shot", 2, "protonet", "ProtoNet, 32 filters, trained 5-way 1-shot", options={"hidden": 32},
         tests=STANDARD_TESTS),
    Spec("protonet32-5shot", 2, "protonet", "ProtoNet, 32 filters, trained 5-way 5-shot", options={"hidden": 32},
         k_shot=5, tests=STANDARD_TESTS),
    Spec("protonet-30classes", 2, "protonet", "ProtoNet, 30 training classes", train_classes=30,
         tests=STANDARD_TESTS[:1]),
    Spec("siamese-1shot", 2, "siamese", "Siamese network, trained 5-way 1-shot"),
    # Matching networks as the paper writes them (attention = softmax of the cosine), and with the cosine
    # scaled by 10 before the softmax: Conv4's features are ReLU outputs, so their cosines lie in [0, 1].
    Spec("matching-1shot", 2, "matching", "Matching network, trained 5-way 1-shot", tests=STANDARD_TESTS),
    Spec("matching-scaled-1shot", 2, "matching", "Matching network, cosine x10, trained 5-way 1-shot",
         options={"scale": 10.0}, tests=STANDARD_TESTS),
    # Transfer instead of meta-learning: the same backbone pretrained as a classifier of every background
    # class, on the same images step for step as protonet-1shot (one episode of 5 classes, 80 images, per
    # step) with the same stopping rule; each test episode is then classified from the frozen features
    # (Chen et al. 2019; Wang et al. 2019).
    Spec("baseline", 2, "pretrained", "Baseline: pretrained, linear head per episode", options={"rule": "linear"},
         tests=STANDARD_TESTS),
    Spec("baselinepp", 2, "pretrained", "Baseline++: pretrained, cosine head per episode",
         options={"rule": "cosine"}, tests=STANDARD_TESTS),
    Spec("simpleshot", 2, "pretrained", "SimpleShot: pretrained, centred L2-normalised nearest mean",
         options={"rule": "simpleshot"}, tests=STANDARD_TESTS),
    Spec("relation-1shot", 2, "relation", "Relation Network, trained 5-way 1-shot"),
    Spec("relation-5shot", 2, "relation", "Relation Network, trained 5-way 5-shot", k_shot=5,
         tests=STANDARD_TESTS[1:2]),
    # Lecture 3: the MAML family, 5-way 1-shot, meta-batch 4.
    Spec("maml-1step", 3, "maml", "MAML (second order), 1 inner step", options={"inner_lr": 0.4, "inner_steps": 1},
         **_MAML),
    Spec("fomaml-1step", 3, "maml", "first-order MAML, 1 inner step",
         options={"inner_lr": 0.4, "inner_steps": 1, "first_order": True}, **_MAML),
    Spec("maml-5step", 3, "maml", "MAML (second order), 5 inner steps",
         options={"inner_lr": 0.1, "inner_steps": 5}, **{**_MAML, "test_options": {"inner_steps": 10}}),
    Spec("fomaml-5step", 3, "maml", "first-order MAML, 5 inner steps",
         options={"inner_lr": 0.1, "inner_steps": 5, "first_order": True},
         **{**_MAML, "test_options": {"inner_steps": 10}}),
    # ANIL and Proto-MAML with maml-1step's settings: only the head adapts; the head starts as ProtoNet.
    Spec("anil-1step", 3, "anil", "ANIL (only the head adapts), 1 inner step",
         options={"inner_lr": 0.4, "inner_steps": 1}, **_MAML),
    Spec("protomaml-1step", 3, "protomaml", "Proto-MAML (prototype head), 1 inner step",
         options={"inner_lr": 0.4, "inner_steps": 1}, **_MAML),
    Spec("metasgd-1step", 3, "metasgd", "Meta-SGD, 1 inner step", options={"inner_lr": 0.4, "inner_steps": 1},
         **_MAML),
    Spec("reptile-1shot", 3, "reptile", "Reptile, adapted on 1 image per class",
         options={"inner_lr": 0.1, "inner_steps": 5, "adapt_on_query": False},
         **{**_MAML, "outer_lr": 1.0, "optimizer": "sgd", "n_query": 5, "test_options": {"inner_steps": 10}}),
    # Lecture 4: black boxes with an encoder learned inside them, trained on 1 to 5 shots.
    Spec("lstm", 4, "lstm", "recurrent learner (LSTM)", options={"hidden": 256}, **_BLACKBOX),
    Spec("averaging", 4, "averaging", "feedforward + average", options={"hidden": 256}, **_BLACKBOX),
    Spec("attention", 4, "attention", "transformer in context (attention over the support set)",
         options={"hidden": 128, "layers": 2, "heads": 4}, **_BLACKBOX),
    # The same two black boxes on one shared, frozen encoder (ProtoNet 1-shot's of the same seed):
    # they differ only in how they read the support set, not in the representation they learn.
    Spec("lstm-pretrained", 4, "lstm", "recurrent learner (LSTM), frozen ProtoNet encoder",
         options={"hidden": 256, "encoder_from": "protonet-1shot"}, **_BLACKBOX),
    Spec("averaging-pretrained", 4, "averaging", "feedforward + average, frozen ProtoNet encoder",
         options={"hidden": 256, "encoder_from": "protonet-1shot"}, **_BLACKBOX),
]}


def settings_hash(settings: dict, drop: tuple[str, ...] = ()) -> str:
    """The fingerprint of an experiment's settings: a short SHA-256 of their sorted JSON, ``drop`` left out."""
    kept = {k: v for k, v in settings.items() if k not in drop}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def select_specs(names: list[str] | tuple[str, ...]) -> list:
    """Specs and studies by name, by chapter number (``"2"`` or ``"lecture2"``) or ``"all"``; a clear error otherwise.

    Returns :class:`Spec` and :class:`~mlcourse.experiments.studies.Study` objects, in order.
    """
    from .studies import STUDIES

    every = [*SPECS.values(), *STUDIES.values()]
    out: list = []
    for name in names:
        key = name.lower().removeprefix("lecture").removeprefix("chapter").strip()
        if name == "all":
            found = every
        elif name in SPECS or name in STUDIES:
            found = [SPECS.get(name) or STUDIES[name]]
        elif key.isdigit():
            found = [s for s in every if s.chapter == int(key)]
            if not found:
                chapters = sorted({s.chapter for s in every})
                raise ValueError(f"no spec belongs to chapter {key}; chapters with specs: {chapters}")
        else:
            raise ValueError(f"unknown spec {name!r}; choose 'all', a chapter number or one of: "
                             f"{', '.join(s.name for s in every)}")
        out += [s for s in found if s not in out]
    return out
