"""Freezing, discriminative learning rates, gradual unfreezing, CNN codes, torchvision backbones."""
import numpy as np
import pytest
import torch
from torch import nn

from mlcourse.backbones import Conv4
from mlcourse.evaluation import accuracy
from mlcourse.transfer.finetune import (TransferNet, choose_probe, choose_probe_block, extract_features, fine_tune,
                                        freeze, frozen_groups, layer_groups, linear_probe, param_groups, reinit_head,
                                        torchvision_backbone, train_mode, unfreeze)
from mlcourse.training import History

GROUPS = ["backbone.encoder.0", "backbone.encoder.1", "backbone.encoder.2", "backbone.encoder.3", "head"]


def small_net(n_classes=3, seed=0):
    torch.manual_seed(seed)
    return TransferNet(Conv4(hidden=8), 8, n_classes)


def toy_data(n=48, n_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % n_classes
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.2
    for c in range(n_classes):  # each class lights up its own band of rows
        x[y == c, :, 4 + 8 * c: 10 + 8 * c, 4:24] += 0.8
    return x, y


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_layer_groups_of_conv4_and_errors():
    net = small_net()
    assert [n for n, _ in layer_groups(net)] == GROUPS
    assert freeze(net, 2) == GROUPS[:2]
    assert frozen_groups(net) == GROUPS[:2]
    assert unfreeze(net, ["backbone.encoder.1"]) == ["backbone.encoder.1"]
    assert frozen_groups(net) == GROUPS[:1]
    with pytest.raises(ValueError, match="no layer group named"):
        freeze(net, ["encoder.7"])
    with pytest.raises(ValueError, match="depth must lie in"):
        freeze(net, 9)


@pytest.mark.parametrize("depth", [2, 4])
def test_frozen_layers_get_no_gradient_and_do_not_change(depth):
    net = small_net()
    x, y = toy_data()
    freeze(net, depth)
    before = {n: [state(m) for m in mods] for n, mods in layer_groups(net)}
    loss = nn.functional.cross_entropy(train_mode(net)(x), y)
    loss.backward()
    for name, mods in layer_groups(net)[:depth]:
        assert all(p.grad is None for m in mods for p in m.parameters()), name
    net.zero_grad()
    fine_tune(net, x, y, epochs=2, lr=1e-2, progress=False)
    for i, (name, mods) in enumerate(layer_groups(net)):
        after = [state(m) for m in mods]
        same = all(torch.equal(a[k], b[k]) for a, b in zip(after, before[name]) for k in a)
        # frozen groups: weights AND BatchNorm running statistics unchanged; the others trained
        assert same == (i < depth), name


def test_head_only_training_changes_only_the_head():
    net = small_net()
    x, y = toy_data()
    freeze(net, 4)
    backbone_before = state(net.backbone)
    head_before = state(net.head)
    fine_tune(net, x, y, epochs=3, lr=1e-2, progress=False)
    assert all(torch.equal(v, state(net.backbone)[k]) for k, v in backbone_before.items())
    assert not torch.equal(head_before["weight"], net.head.weight)


def test_discriminative_learning_rates():
    net = small_net()
    groups = param_groups(net, lr=1.0, decay=0.5)
    assert [g["name"] for g in groups] == GROUPS[::-1]
    assert [g["lr"] for g in groups] == [1.0, 0.5, 0.25, 0.125, 0.0625]
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    freeze(net, 3)
    assert [g["name"] for g in param_groups(net, 1.0, 0.5)] == ["head", "backbone.encoder.3"]
    freeze(net, 5)
    with pytest.raises(ValueError, match="every parameter is frozen"):
        param_groups(net, 1.0)
    with pytest.raises(ValueError, match="nothing to train"):
        fine_tune(net, *toy_data(), epochs=1, progress=False)


def test_gradual_unfreezing_opens_one_group_per_epoch_from_the_top():
    net = small_net()
    x, y = toy_data()
    hist = fine_tune(net, x, y, epochs=6, lr=1e-2, gradual=True, progress=False)
    assert hist.epoch == [1, 2, 3, 4, 5, 6] and len(hist.loss) == 6
    assert hist.trainable[0] == ["head"]
    assert hist.trainable[1] == ["backbone.encoder.3", "head"]
    assert hist.trainable[4] == GROUPS and hist.trainable[5] == GROUPS


def test_reinit_head_and_linear_probe_learn_the_toy_task():
    net = small_net(n_classes=3)
    x, y = toy_data(n=90)
    hist = fine_tune(net, x, y, epochs=10, lr=1e-2, batch_size=16, eval_data=(x, y), progress=False)
    assert isinstance(hist, History) and len(hist.eval_acc) == 10
    assert hist.eval_acc[-1] > 0.9 and hist.loss[-1] < hist.loss[0]
    assert hist.eval_acc[-1] == accuracy(net, x, y)
    reinit_head(net, n_classes=5)
    assert net.head.out_features == 5 and net(x[:2]).shape == (2, 5)
    feats = extract_features(net.backbone, x)
    assert feats.shape == (90, 8) and feats.dtype == np.float32
    acc, _ = linear_probe(feats[::2], y[::2].numpy(), feats[1::2], y[1::2].numpy(), kind="svm")
    assert acc > 0.9
    acc_lr, _ = linear_probe(feats[::2], y[::2].numpy(), feats[1::2], y[1::2].numpy(), kind="logreg")
    assert acc_lr > 0.9
    with pytest.raises(ValueError, match="kind"):
        linear_probe(feats, y.numpy(), feats, y.numpy(), kind="tree")


def test_features_are_the_same_in_train_and_eval_mode_when_frozen():
    net = small_net()
    x, _ = toy_data()
    freeze(net, 4)
    train_mode(net)
    f_train = net.backbone(x)
    net.eval()
    torch.testing.assert_close(f_train, net.backbone(x))


def test_torchvision_resnet18_with_random_and_local_weights(tmp_path):
    backbone, d = torchvision_backbone("resnet18", in_channels=1)
    assert d == 512
    net = TransferNet(backbone, d, 4)
    stages = [f"backbone.layer{i}" for i in range(1, 5)]
    assert [n for n, _ in layer_groups(net)] == ["backbone.stem", *stages, "head"]
    x = torch.rand(2, 1, 32, 32)
    assert net.eval()(x).shape == (2, 4)
    freeze(net, 5)
    assert frozen_groups(net)[-1] == "backbone.layer4"
    # a local weights file (as saved from a downloaded model) loads into a fresh backbone
    import torchvision
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    loaded, _ = torchvision_backbone("resnet18", weights=path)
    torch.testing.assert_close(loaded.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    with pytest.raises(FileNotFoundError):
        torchvision_backbone("resnet18", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="no model named"):
        torchvision_backbone("resnet_nope")


def test_head_learning_rate_and_transfer_strategies_leave_the_source_untouched():
    from mlcourse.transfer.finetune import STRATEGIES, transfer_accuracy

    net = small_net()
    groups = param_groups(net, lr=1e-3, decay=0.5, head_lr=1e-2)
    assert [g["lr"] for g in groups] == [1e-2, 1e-3, 5e-4, 2.5e-4, 1.25e-4]
    x, y = toy_data(n=60)
    before = state(net)
    assert STRATEGIES == {"linear_svm": "linear SVM", "head_only": "head only", "fine_tune_all": "fine-tune all",
                          "from_scratch": "from scratch"}
    for strategy in STRATEGIES:
        acc = transfer_accuracy(strategy, net, x[::2], y[::2], x[1::2], y[1::2], n_classes=3, epochs=2,
                                head_lr=1e-2)
        assert 0 <= acc <= 1
    after = state(net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="unknown strategy"):
        transfer_accuracy("magic", net, x, y, x, y, n_classes=3)
    with pytest.raises(ValueError, match="unknown strategy"):
        transfer_accuracy("head only", net, x, y, x, y, n_classes=3)  # a label, not an identifier
    with pytest.raises(ValueError, match="n_classes"):
        transfer_accuracy("head_only", net, x, y, x, y, n_classes=2)


def test_choose_probe_picks_a_block_and_C_from_training_images_only(monkeypatch):
    from mlcourse.transfer import finetune

    seen = []
    real = finetune.extract_features
    monkeypatch.setattr(finetune, "extract_features", lambda net, x, **kw: seen.append(len(x)) or real(net, x, **kw))
    torch.manual_seed(0)
    source = TransferNet(Conv4(hidden=8), 8, 3)
    x = torch.rand(18, 1, 28, 28)
    y = torch.arange(3).repeat_interleave(6)
    x[y == 1] += 0.5  # class 1 is brighter: some block separates it
    block, c, scores = choose_probe(source, x, y, (2, 4), Cs=(0.1, 1.0))
    assert set(scores) == {(2, 0.1), (2, 1.0), (4, 0.1), (4, 1.0)} and scores[block, c] == max(scores.values())
    assert seen == [18, 18]  # one pass per block, over the 18 training images and nothing else
    best_block, by_block = choose_probe_block(source, x, y, (2, 4), C=0.1)
    assert set(by_block) == {2, 4} and by_block[2] == scores[2, 0.1]
    with pytest.raises(ValueError, match="at least 2 training images per class"):
        choose_probe(source, x[:7], y[:7])


def test_the_validation_split_holds_out_part_of_every_class():
    from mlcourse.experiments.studies import validation_split

    y = torch.tensor([0] * 3 + [1] * 10 + [2] * 15)
    fit, val = validation_split(y, 1 / 3)
    assert len(np.intersect1d(fit, val)) == 0 and len(fit) + len(val) == len(y)
    assert [int((y[val] == c).sum()) for c in range(3)] == [1, 3, 5]
    assert set(y[fit].tolist()) == {0, 1, 2}
    again = validation_split(y, 1 / 3)
    assert np.array_equal(again[0], fit) and np.array_equal(again[1], val)  # fixed, whatever the training seed
    with pytest.raises(ValueError, match="at least 2 are needed"):
        validation_split(torch.tensor([0, 1, 1]), 1 / 3)
