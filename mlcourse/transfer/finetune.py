"""Fine-tuning, freezing and feature extraction ("CNN codes").

A network trained on a big *source* task has learned features; a *target* task with less data
can reuse them. How much to reuse is the question (Yosinski et al., "How transferable are
features in deep neural networks?", 2014; the CS231n transfer-learning notes):

- **Fixed feature extractor**: freeze the whole backbone, take its outputs ("CNN codes",
  Razavian et al., 2014) and fit a linear classifier (:func:`extract_features`,
  :func:`linear_probe`).
- **Fine-tune the head**: same frozen backbone, a new last layer trained by gradient descent.
- **Full fine-tuning**: start from the source weights and train everything, usually with a
  smaller learning rate for the early layers (*discriminative learning rates*,
  :func:`param_groups`) and perhaps unfreezing from the top one group at a time
  (*gradual unfreezing*, Howard and Ruder, ULMFiT, 2018).

Layers are addressed as *groups*, ordered from the input to the output
(:func:`layer_groups`): for :class:`TransferNet` on a :class:`~mlcourse.backbones.Conv4`,
the four conv blocks and the head; for a torchvision ResNet, the stem, ``layer1`` ..
``layer4`` and the head.

A frozen layer gets no gradient (``requires_grad=False``) and does not change: its
BatchNorm layers also keep their running statistics, because :func:`train_mode` (which the
trainers here use instead of ``model.train()``) runs every BatchNorm whose parameters are
frozen in eval mode.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Sequence
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from ..device import get_device
from ..evaluation import accuracy, correct, eval_mode
from ..progress import tqdm
from ..training import History, LossPlateau, train_epoch

__all__ = ["TransferNet", "layer_groups", "freeze", "unfreeze", "frozen_groups", "train_mode", "reinit_head",
           "param_groups", "fine_tune", "extract_features", "linear_probe",
           "torchvision_backbone", "count_parameters", "clone", "reinitialise", "transfer_correct",
           "block_probe", "choose_probe_block", "choose_probe",
           "STRATEGIES", "transfer_accuracy"]


class TransferNet(nn.Module):
    """A backbone (feature extractor) and a linear head: the shape of every model here.

    Args:
        backbone: Maps inputs to flat features ``(B, n_features)``.
        n_features: Size of the backbone's output.
        n_classes: Outputs of the head.
    """

    def __init__(self, backbone: nn.Module, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _backbone_groups(prefix: str, backbone: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    names = dict(backbone.named_children())
    if {"conv1", "bn1", "layer1", "layer4", "fc"} <= names.keys():  # a torchvision ResNet
        return ([(f"{prefix}stem", [names["conv1"], names["bn1"]])]
                + [(f"{prefix}layer{i}", [names[f"layer{i}"]]) for i in range(1, 5)])
    encoder = names.get("encoder")
    if isinstance(encoder, nn.Sequential):  # Conv4 and friends
        return [(f"{prefix}encoder.{n}", [m]) for n, m in encoder.named_children()]
    return [(f"{prefix}{n}", [m]) for n, m in names.items() if any(True for _ in m.parameters())]


def layer_groups(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The model's layers in groups, ordered from the input to the output: ``[(name, modules)]``.

    :class:`TransferNet`: the backbone's groups (conv blocks; ResNet stem and stages) then
    ``"head"``. Any other module: its top-level children that have parameters.
    """
    if isinstance(model, TransferNet):
        return _backbone_groups("backbone.", model.backbone) + [("head", [model.head])]
    return _backbone_groups("", model)


def _select(model: nn.Module, groups: int | str | Sequence[str]) -> list[tuple[str, list[nn.Module]]]:
    all_groups = layer_groups(model)
    names = [n for n, _ in all_groups]
    if isinstance(groups, bool) or not isinstance(groups, (int, str, Sequence)):
        raise TypeError(f"groups must be a depth (int) or group names, got {groups!r}")
    if isinstance(groups, int):
        if not 0 <= groups <= len(all_groups):
            raise ValueError(f"depth must lie in 0..{len(all_groups)} (the model has groups {names}), got {groups}")
        return all_groups[:groups]
    wanted = [groups] if isinstance(groups, str) else list(groups)
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ValueError(f"no layer group named {unknown}; the model's groups are {names}")
    return [g for g in all_groups if g[0] in wanted]


def _set_trainable(modules: list[nn.Module], trainable: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(trainable)


def freeze(model: nn.Module, groups: int | str | Sequence[str]) -> list[str]:
    """Freeze layer groups: by depth (``3``: the first three groups from the input) or by name.

    Returns the names of the groups frozen. Call :func:`train_mode` rather than
    ``model.train()`` so that frozen BatchNorm layers keep their statistics.
    """
    chosen = _select(model, groups)
    for _, modules in chosen:
        _set_trainable(modules, False)
    train_mode(model, model.training)
    return [n for n, _ in chosen]


def unfreeze(model: nn.Module, groups: int | str | Sequence[str] | None = None) -> list[str]:
    """Unfreeze layer groups by name, the *last* ``groups`` groups (an int: from the top), or all (None)."""
    all_groups = layer_groups(model)
    if groups is None:
        chosen = all_groups
    elif isinstance(groups, int) and not isinstance(groups, bool):
        if not 0 <= groups <= len(all_groups):
            raise ValueError(f"can unfreeze 0..{len(all_groups)} groups from the top, got {groups}")
        chosen = all_groups[len(all_groups) - groups:]
    else:
        chosen = _select(model, groups)
    for _, modules in chosen:
        _set_trainable(modules, True)
    train_mode(model, model.training)
    return [n for n, _ in chosen]


def frozen_groups(model: nn.Module) -> list[str]:
    """Names of the groups whose parameters are all frozen."""
    return [n for n, mods in layer_groups(model)
            if all(not p.requires_grad for m in mods for p in m.parameters())]


_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def train_mode(model: nn.Module, mode: bool = True) -> nn.Module:
    """``model.train(mode)``, except that BatchNorm layers with frozen parameters stay in eval mode.

    In train mode a BatchNorm updates its running mean and variance even when its weights are
    frozen; a frozen layer must not change, and a fixed feature extractor must give the same
    features in training and at test time.
    """
    model.train(mode)
    if mode:
        for m in model.modules():
            if isinstance(m, _BN) and m.affine and not any(p.requires_grad for p in m.parameters()):
                m.eval()
    return model


def reinit_head(model: TransferNet, n_classes: int | None = None, seed: int | None = None) -> TransferNet:
    """Replace the head by a freshly initialised linear layer (for ``n_classes`` outputs)."""
    if not isinstance(model, TransferNet):
        raise TypeError(f"reinit_head needs a TransferNet, got {type(model).__name__}")
    old = model.head
    if seed is not None:
        torch.manual_seed(seed)
    model.head = nn.Linear(old.in_features, n_classes or old.out_features).to(old.weight.device)
    return model


def param_groups(model: nn.Module, lr: float, decay: float = 1.0, head_lr: float | None = None) -> list[dict]:
    """Optimizer parameter groups with discriminative learning rates.

    The top group (the head) gets ``lr``, the one below ``lr * decay``, then ``lr * decay**2``
    and so on towards the input (ULMFiT uses ``decay = 1 / 2.6``). With ``head_lr`` the head
    gets its own rate (a freshly initialised head can take larger steps than pre-trained
    layers), the group below it ``lr``, the next ``lr * decay`` and so on. Frozen parameters
    are left out; parameters outside every group get ``lr``.
    """
    if not 0 <= decay <= 1:
        raise ValueError(f"decay must lie in [0, 1] (earlier layers learn more slowly), got {decay}")
    groups = layer_groups(model)
    seen: set[int] = set()
    out = []
    for depth, (name, modules) in enumerate(reversed(groups)):
        params = [p for m in modules for p in m.parameters() if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            if head_lr is None:
                rate = lr * decay ** depth
            else:  # the head has its own rate; the top pre-trained group gets lr
                rate = head_lr if depth == 0 else lr * decay ** (depth - 1)
            out.append({"params": params, "lr": rate, "name": name})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    if rest:
        out.append({"params": rest, "lr": lr, "name": "other"})
    if not out:
        raise ValueError("every parameter is frozen: nothing to train; unfreeze at least the head")
    return out


def fine_tune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 10, lr: float = 1e-3,
              decay: float = 1.0, head_lr: float | None = None, gradual: bool = False,
              weight_decay: float = 0.0, batch_size: int = 64,
              eval_data: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0,
              patience: int | None = None, device: torch.device | str | None = None,
              progress: bool = True) -> History:
    """Train ``model`` with Adam and cross-entropy, respecting what is frozen.

    Args:
        model: Trained in place; groups frozen with :func:`freeze` stay fixed.
        x, y: Training inputs and labels.
        lr: Learning rate of the head; lower groups get ``lr * decay**depth`` (:func:`param_groups`).
        head_lr: Learning rate of the top group alone, if different.
        gradual: Gradual unfreezing: the first epoch trains only the top group that is
            trainable now, each later epoch unfreezes one more group below it.
        eval_data: ``(x, y)`` to measure accuracy on after every epoch.
        seed: Seeds the batch order.
        patience: Train to convergence: ``epochs`` is then the most, and training stops when
            the training loss has not fallen for ``patience`` epochs
            (:class:`~mlcourse.training.LossPlateau`); ``history.stopped`` says which ended it.

    Training from scratch and pre-training are the same call on a fresh model.

    Returns:
        The :class:`~mlcourse.training.History`, per epoch: ``epoch``, ``loss`` (mean training
        loss), ``trainable`` (the trainable groups) and, with ``eval_data``, ``eval_acc``.
    """
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    device = get_device(device)
    model.to(device)
    groups = layer_groups(model)
    trainable_now = [n for n, _ in groups if n not in frozen_groups(model)]
    if not trainable_now:
        raise ValueError("every layer group is frozen: nothing to train; unfreeze at least the head")
    schedule = trainable_now  # gradual unfreezing walks down this list from the top
    if gradual:
        freeze(model, trainable_now[:-1])
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    history = History()
    opt = None
    rule, early = LossPlateau(patience), False
    for epoch in tqdm(range(epochs), desc="fine-tuning", disable=not progress):
        if gradual and epoch > 0 and epoch < len(schedule):
            unfreeze(model, [schedule[-1 - epoch]])
            opt = None
        if opt is None:  # (re)built when the trainable set changes; Adam state restarts
            opt = torch.optim.Adam(param_groups(model, lr, decay, head_lr), weight_decay=weight_decay)
        train_mode(model)
        loss = train_epoch(opt, loader, lambda xb, yb: F.cross_entropy(model(xb.to(device)), yb.to(device)))
        history.log(epoch=epoch + 1, loss=loss, trainable=[n for n, _ in groups if n not in frozen_groups(model)])
        if eval_data is not None:
            history.log(eval_acc=accuracy(model, *eval_data, batch_size=256, device=device))
        if rule.update(loss) and not (gradual and epoch + 1 < len(schedule)):
            early = True
            break
    history.stopped = rule.verdict(early)
    model.eval()
    return history


@torch.no_grad()
def extract_features(backbone: nn.Module, x: torch.Tensor, batch_size: int = 256,
                     device: torch.device | str | None = None) -> np.ndarray:
    """CNN codes: the backbone's outputs for ``x`` in eval mode, as a ``float32`` numpy array ``(N, D)``.

    Pass ``model.backbone`` of a :class:`TransferNet` (or any feature extractor).
    """
    device = get_device(device)
    with eval_mode(backbone.to(device)):
        out = [backbone(x[i:i + batch_size].to(device)).flatten(1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.float32)


def linear_probe(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                 test_labels: np.ndarray, *, kind: str = "svm", C: float = 1.0) -> tuple[float, object]:
    """Fit a linear classifier on features and score it: returns ``(test accuracy, fitted pipeline)``.

    Args:
        kind: ``"svm"`` (``LinearSVC``) or ``"logreg"`` (``LogisticRegression``); the features
            are standardised first.
        C: Inverse regularisation strength.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind not in ("svm", "logreg"):
        raise ValueError(f"kind must be 'svm' or 'logreg', got {kind!r}")
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
        raise ValueError("need one label per feature row, for both the training and the test features")
    clf = LinearSVC(C=C, max_iter=5000) if kind == "svm" else LogisticRegression(C=C, max_iter=2000)
    pipe = make_pipeline(StandardScaler(), clf).fit(train_features, train_labels)
    return float((pipe.predict(test_features) == test_labels).mean()), pipe


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def torchvision_backbone(name: str = "resnet18", weights: str | os.PathLike | None = None,
                         in_channels: int = 3) -> tuple[nn.Module, int]:
    """A torchvision classification network without its last layer: ``(backbone, n_features)``.

    Args:
        name: A torchvision model with an ``fc`` head (``"resnet18"``, ``"resnet34"``, ...).
        weights: ``None`` (random initialisation), a path to a local ``state_dict`` file (saved
            with ``torch.save(model.state_dict(), path)``, e.g. downloaded once elsewhere), or a
            torchvision weights name such as ``"DEFAULT"`` / ``"IMAGENET1K_V1"``, which torchvision
            downloads (needs a network).
        in_channels: Replace the first convolution for inputs with this many channels (1 for
            grey images); its pretrained filters are summed over the RGB channels.

    Example:
        >>> backbone, d = torchvision_backbone("resnet18")
        >>> model = TransferNet(backbone, d, n_classes=10)
    """
    import torchvision

    builder = getattr(torchvision.models, name, None)
    if builder is None:
        raise ValueError(f"torchvision has no model named {name!r}")
    net = builder(weights=None)
    if weights is not None:
        path = os.fspath(weights)
        if os.path.exists(path):
            state = torch.load(path, map_location="cpu", weights_only=True)
            missing, unexpected = net.load_state_dict(state, strict=False)
            if [k for k in missing if not k.startswith("fc.")] or unexpected:
                raise ValueError(f"{path} does not fit {name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        elif os.sep in path or path.endswith((".pt", ".pth")):
            raise FileNotFoundError(f"no weights file at {path}")
        else:
            net = builder(weights=path)  # torchvision resolves the name and downloads the file
    if not hasattr(net, "fc"):
        raise ValueError(f"{name} has no 'fc' head; use a ResNet-style model")
    n_features = net.fc.in_features
    net.fc = nn.Identity()
    if in_channels != 3:
        old = net.conv1
        new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        with torch.no_grad():
            new.weight.copy_(old.weight.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels)
        net.conv1 = new
    return net, n_features


def clone(model: nn.Module) -> nn.Module:
    """A deep copy (same weights, same frozen groups)."""
    return copy.deepcopy(model)


def reinitialise(model: nn.Module, seed: int | None = None) -> nn.Module:
    """Reset every layer's parameters (and BatchNorm statistics) to a fresh random initialisation."""
    if seed is not None:
        torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    for p in model.parameters():
        p.requires_grad_(True)
    return model


STRATEGIES = {"linear_svm": "linear SVM", "head_only": "head only", "fine_tune_all": "fine-tune all",
              "from_scratch": "from scratch"}
"""The ways of using a source model for a target task, by identifier, with the label for tables and plots."""


def transfer_correct(strategy: str, source: TransferNet, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
                     y_test: torch.Tensor, *, n_classes: int, epochs: int = 20, lr: float = 1e-3, decay: float = 1.0,
                     head_lr: float | None = None, freeze_depth: int = 0, seed: int = 0, batch_size: int = 64,
                     patience: int | None = None, device: torch.device | str | None = None) -> np.ndarray:
    """Whether each test image is classified right by one way of using a pre-trained ``source`` model.

    Arguments as :func:`transfer_accuracy`, which is the mean of this array; ``patience``
    trains to convergence (``epochs`` is then the most, see :func:`fine_tune`). Two
    strategies scored on the same test images are compared image by image (a paired test).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    y_max = int(max(y.max(), y_test.max()))
    if y_max >= n_classes:
        raise ValueError(f"labels go up to {y_max} but n_classes={n_classes}")
    if strategy == "linear_svm":
        train_codes = extract_features(source.backbone, x, device=device)
        test_codes = extract_features(source.backbone, x_test, device=device)
        _, pipe = linear_probe(train_codes, y.numpy(), test_codes, y_test.numpy(), kind="svm", C=0.1)
        return pipe.predict(test_codes) == y_test.numpy()
    model = clone(source)
    if strategy == "from_scratch":
        reinitialise(model, seed)
    unfreeze(model)
    reinit_head(model, n_classes, seed=seed)
    if strategy == "head_only":
        freeze(model, len(layer_groups(model)) - 1)
    elif freeze_depth:
        freeze(model, freeze_depth)
    fine_tune(model, x, y, epochs=epochs, lr=lr, decay=decay, head_lr=head_lr, batch_size=batch_size, seed=seed,
              patience=patience, device=device, progress=False)
    return correct(model, x_test, y_test, batch_size=256, device=device)


def transfer_accuracy(strategy: str, source: TransferNet, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
                      y_test: torch.Tensor, *, n_classes: int, epochs: int = 20, lr: float = 1e-3, decay: float = 1.0,
                      head_lr: float | None = None, freeze_depth: int = 0, seed: int = 0, batch_size: int = 64,
                      device: torch.device | str | None = None) -> float:
    """Test accuracy of one way of using a pre-trained ``source`` model on a target task.

    The source model is never modified (every strategy works on a copy).

    Args:
        strategy: ``"linear_svm"`` (CNN codes of the frozen backbone, a linear SVM),
            ``"head_only"`` (frozen backbone, a new linear head trained with Adam),
            ``"fine_tune_all"`` (new head, every layer trained from the source weights; with
            ``freeze_depth=k`` the first ``k`` groups stay frozen) or ``"from_scratch"``
            (same architecture, random initialisation, every layer trained).
        x, y: Target training data; ``x_test``, ``y_test``: held-out target data.
        n_classes: Classes of the target task.
        epochs, lr, decay, head_lr, batch_size: As in :func:`fine_tune` (``decay`` < 1 gives the
            lower layers smaller learning rates; ``head_lr`` is the rate of the new head).
        seed: Seeds the new head (or the whole network from scratch) and the batch order.
    """
    return float(transfer_correct(strategy, source, x, y, x_test, y_test, n_classes=n_classes, epochs=epochs, lr=lr,
                                  decay=decay, head_lr=head_lr, freeze_depth=freeze_depth, seed=seed,
                                  batch_size=batch_size, device=device).mean())


def block_probe(source: TransferNet, k: int, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
                y_test: torch.Tensor, *, C: float = 0.1, device: torch.device | str | None = None) -> np.ndarray:
    """A linear SVM on the codes after the first ``k`` conv blocks of the frozen ``source``: per test image, right or not.

    The guide's advice for a small target unlike the source: the early layers hold more
    generic features than the last one.
    """
    cut = _first_blocks(source, k)
    train_codes, test_codes = extract_features(cut, x, device=device), extract_features(cut, x_test, device=device)
    _, pipe = linear_probe(train_codes, y.numpy(), test_codes, y_test.numpy(), kind="svm", C=C)
    return pipe.predict(test_codes) == y_test.numpy()


def choose_probe_block(source: TransferNet, x: torch.Tensor, y: torch.Tensor, blocks: Sequence[int] = (1, 2, 3, 4), *,
                       C: float = 0.1, device: torch.device | str | None = None) -> tuple[int, dict[int, float]]:
    """The block of :func:`block_probe` chosen by cross-validation on the *training* images alone.

    Returns:
        ``(best block, {block: mean cross-validated accuracy})``; ties go to the later block.
    """
    block, _, scores = choose_probe(source, x, y, blocks, Cs=(C,), device=device)
    return block, {k: v for (k, _), v in scores.items()}


def choose_probe(source: TransferNet, x: torch.Tensor, y: torch.Tensor, blocks: Sequence[int] = (1, 2, 3, 4),
                 Cs: Sequence[float] = (0.01, 0.1, 1.0), *, device: torch.device | str | None = None
                 ) -> tuple[int, float, dict[tuple[int, float], float]]:
    """The block and the SVM's ``C`` of :func:`block_probe`, chosen together by cross-validation on the training images.

    Up to 3 folds (fewer when a class has fewer images). Ties go to the later block, then to
    the earlier ``C`` of ``Cs``.

    Returns:
        ``(block, C, {(block, C): mean cross-validated accuracy})``.
    """
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    folds = min(3, int(np.bincount(y.numpy()).min()))
    if folds < 2:
        raise ValueError("choosing a block by cross-validation needs at least 2 training images per class")
    if not blocks or not Cs:
        raise ValueError(f"need at least one block and one C, got blocks={list(blocks)}, Cs={list(Cs)}")
    scores = {}
    for k in blocks:
        codes = extract_features(_first_blocks(source, k), x, device=device)
        for c in Cs:
            scores[k, c] = float(cross_val_score(make_pipeline(StandardScaler(), LinearSVC(C=c, max_iter=5000)), codes,
                                                 y.numpy(), cv=folds).mean())
    order = {c: i for i, c in enumerate(Cs)}
    block, c = max(scores, key=lambda kc: (scores[kc], kc[0], -order[kc[1]]))
    return block, c, scores


def _first_blocks(source: TransferNet, k: int) -> nn.Module:
    encoder = getattr(source.backbone, "encoder", None)
    if encoder is None or not 1 <= k <= len(encoder):
        raise ValueError(f"block_probe needs a Conv4-style backbone with an .encoder of blocks and 1 <= k <= its length; "
                         f"got k={k}")
    return encoder[:k]
