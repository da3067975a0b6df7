"""Multi-task learning: a shared trunk, a head per task, the weighted sum of the task losses."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlcourse.backbones import MLP, Conv4
from mlcourse.data.base import CharacterDataset
from mlcourse.evaluation import accuracy
from mlcourse.transfer.multitask import MultiTaskNet, multitask_loss, train_multitask


def net(seed=0, tasks=None):
    torch.manual_seed(seed)
    return MultiTaskNet(MLP([6, 16, 8]), 8, tasks or {"a": 3, "b": 2})


def two_tasks(n_a=120, n_b=12, seed=0):
    """Task a (plenty of data) and task b (little) read the same direction of the input."""
    g = torch.Generator().manual_seed(seed)
    xa, xb = torch.randn(n_a, 6, generator=g), torch.randn(n_b, 6, generator=g)
    ya = torch.bucketize(xa[:, 0].contiguous(), torch.tensor([-0.5, 0.5]))  # 3 classes from the first coordinate
    yb = (xb[:, 0] > 0).long()  # 2 classes from the same coordinate
    return {"a": (xa, ya), "b": (xb, yb)}


def test_the_loss_is_the_weighted_sum_of_the_task_cross_entropies():
    model, data = net(), two_tasks()
    weights = {"a": 0.3, "b": 2.0}
    by_hand = sum(w * F.cross_entropy(model.heads[t](model.backbone(data[t][0])), data[t][1])
                  for t, w in weights.items())
    torch.testing.assert_close(multitask_loss(model, data, weights), by_hand)


def test_a_task_view_shares_the_trunk_and_its_head():
    model = net()
    view = model.for_task("b")
    assert view.backbone is model.backbone and view.head is model.heads["b"]
    x = torch.randn(5, 6)
    torch.testing.assert_close(view(x), model(x, "b"))
    with torch.no_grad():
        model.backbone.net[1].weight.add_(1.0)  # a change to the shared trunk is seen by the view
    torch.testing.assert_close(view(x), model(x, "b"))


def test_a_task_with_weight_zero_leaves_its_head_alone_and_the_other_task_learns():
    model, data = net(), two_tasks()
    head_b = copy.deepcopy(model.heads["b"].state_dict())
    before = accuracy(model.for_task("a"), *data["a"])
    h = train_multitask(model, data, {"a": 1.0, "b": 0.0}, epochs=30, lr=1e-2, batch_size=32, progress=False)
    assert all(torch.equal(v, head_b[k]) for k, v in model.heads["b"].state_dict().items())
    assert h.loss[-1] < h.loss[0] and accuracy(model.for_task("a"), *data["a"]) > max(before, 0.8)


def test_an_epoch_is_one_pass_over_the_largest_task_and_the_small_one_cycles():
    model, data = net(), two_tasks(n_a=100, n_b=8)
    seen = {"a": 0, "b": 0}
    original = model.forward

    def counting(x, task):
        seen[task] += len(x)
        return original(x, task)

    model.forward = counting
    train_multitask(model, data, epochs=2, batch_size={"a": 25, "b": 4}, progress=False)
    assert seen == {"a": 200, "b": 2 * 4 * 4}  # 4 steps per epoch, a batch of 4 of task b at each


def test_a_shared_trunk_helps_a_task_with_little_data_on_a_fixed_seed():
    """Task b alone has 12 examples; task a, which needs the same feature, lends it 300 more."""
    data = two_tasks(n_a=300, n_b=12)
    g = torch.Generator().manual_seed(1)
    x_test = torch.randn(2000, 6, generator=g)
    y_test = (x_test[:, 0] > 0).long()
    alone, both = net(tasks={"b": 2}), net(tasks={"a": 3, "b": 2})
    train_multitask(alone, {"b": data["b"]}, epochs=150, lr=1e-2, batch_size=32, progress=False)
    train_multitask(both, data, epochs=15, lr=1e-2, batch_size=32, progress=False)
    acc_alone, acc_both = accuracy(alone.for_task("b"), x_test, y_test), accuracy(both.for_task("b"), x_test, y_test)
    assert acc_both > acc_alone + 0.03 and acc_both > 0.9


def test_train_multitask_stops_when_the_loss_stops_falling():
    model, data = net(), two_tasks()
    h = train_multitask(model, data, epochs=500, lr=1e-2, batch_size=32, patience=3, progress=False)
    assert h.stopped == "converged" and len(h.loss) < 500


def test_bad_input_says_what_is_wrong():
    model, data = net(), two_tasks()
    with pytest.raises(ValueError, match="no head for tasks \\['c'\\]"):
        train_multitask(model, {"c": data["a"]}, progress=False)
    with pytest.raises(ValueError, match="no loss weight for tasks \\['b'\\]"):
        multitask_loss(model, data, {"a": 1.0})
    with pytest.raises(ValueError, match="task 'b': 12 inputs and 3 labels"):
        train_multitask(model, {"a": data["a"], "b": (data["b"][0], data["b"][1][:3])}, progress=False)
    with pytest.raises(KeyError, match="no task named 'c'"):
        model(torch.randn(2, 6), "c")
    with pytest.raises(ValueError, match="at least 2 classes"):
        MultiTaskNet(Conv4(hidden=8), 8, {"a": 1})


def test_the_script_of_a_class_drops_the_chunk_of_its_alphabet():
    images = np.zeros((4, 5, 5), dtype=np.uint8)
    data = CharacterDataset(images, [0, 1, 2, 2], ["a", "b", "x"], ["Latin 1/8", "Latin 2/8", "Hebrew"])
    assert data.class_scripts == ["Latin", "Latin", "Hebrew"] and data.scripts == ["Latin", "Hebrew"]
    assert data.script_targets().tolist() == [0, 0, 1, 1]
