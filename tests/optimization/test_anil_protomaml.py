"""ANIL (only the head adapts) and Proto-MAML (the head starts as a prototypical network)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlcourse.backbones import MLP, Conv4
from mlcourse.metric import prototype_logits, prototypes
from mlcourse.optimization import ANIL, MAML, MetaSGD, ProtoMAML, prototype_head

from test_maml_gradients import finite_difference, tasks_for


def small_net(n_way=3):
    torch.manual_seed(0)
    return nn.Sequential(Conv4(hidden=3, n_blocks=2, track_running_stats=False, channels_last=False),
                         nn.Linear(3 * 2 * 2, n_way)).double()


def small_body():
    torch.manual_seed(0)
    return Conv4(hidden=3, n_blocks=2, track_running_stats=False, channels_last=False).double()


def test_anil_adapts_the_head_only():
    learner = ANIL(small_net(), inner_lr=0.5, inner_steps=3)
    task = tasks_for((1, 8, 8), n_tasks=1)[0]
    before = {n: p.detach().clone() for n, p in learner.named_parameters()}
    params = learner.adapt(task.support_x, task.support_y)
    assert set(params) == {"weight", "bias"}  # the head's parameters, nothing of the body
    assert not torch.allclose(params["weight"], learner.head.weight)  # the head did move
    assert all(torch.equal(p, before[n]) for n, p in learner.named_parameters())  # the learner itself did not


@pytest.mark.parametrize("first_order", [False, True], ids=["exact", "first-order"])
def test_anil_is_meta_sgd_with_zero_rates_on_the_body(first_order):
    """ANIL's meta-gradient equals that of Meta-SGD whose body rates are 0 and head rates alpha."""
    tasks = tasks_for((1, 8, 8))
    anil = ANIL(small_net(), inner_lr=0.3, inner_steps=2, first_order=first_order)
    sgd = MetaSGD(small_net(), inner_lr=0.3, inner_steps=2, first_order=first_order).double()
    with torch.no_grad():
        for name, rate in zip(sgd.lr_names, sgd.lrs):
            rate.fill_(0.3 if name.startswith("1.") else 0.0)
    ga, gs = anil.meta_gradient(tasks), sgd.meta_gradient(tasks)
    for name in dict(anil.model.named_parameters()):
        torch.testing.assert_close(ga[f"model.{name}"], gs[f"model.{name}"])


@pytest.mark.parametrize("make", [lambda: ANIL(small_net(), inner_lr=0.3, inner_steps=2),
                                  lambda: ProtoMAML(small_body(), inner_lr=0.3, inner_steps=2)],
                         ids=["anil", "protomaml (through the head's start)"])
def test_exact_meta_gradient_matches_finite_differences(make):
    learner = make()
    tasks = tasks_for((1, 8, 8))
    exact = learner.meta_gradient(tasks)
    numeric = finite_difference(learner, tasks)
    for name in exact:
        torch.testing.assert_close(exact[name], numeric[name], atol=1e-6, rtol=1e-4)


def test_protomaml_starts_from_the_prototypical_network():
    learner = ProtoMAML(small_body(), inner_lr=0.3, inner_steps=1)
    task = tasks_for((1, 8, 8), n_tasks=1)[0]
    params = learner.adapt(task.support_x, task.support_y, inner_steps=0)
    with torch.no_grad():
        z_s, z_q = learner.model(task.support_x).flatten(1), learner.model(task.query_x).flatten(1)
        expected = torch.softmax(prototype_logits(z_q, prototypes(z_s, task.support_y, 3)), dim=1)
        torch.testing.assert_close(torch.softmax(learner(task.query_x, params), dim=1), expected)
    w, b = prototype_head(z_s, task.support_y, 3)
    c = prototypes(z_s, task.support_y, 3)
    torch.testing.assert_close(w, 2 * c)
    torch.testing.assert_close(b, -(c * c).sum(1))


def test_first_order_protomaml_still_differentiates_the_head_init():
    """fo-Proto-MAML: the inner gradients are constants, but the head's start depends on the body."""
    task = tasks_for((1, 8, 8), n_tasks=1)[0]
    fo = ProtoMAML(small_body(), inner_lr=0.3, inner_steps=1, first_order=True)
    g = fo.meta_gradient([task])
    assert all(v.abs().sum() > 0 for v in g.values())
    # the same first-order step with the head's start held constant gives another gradient
    params = fo.adapt(task.support_x, task.support_y, first_order=True)
    held = {n: (p.detach() if n.startswith("head.") else p) for n, p in params.items()}
    without = torch.autograd.grad(F.cross_entropy(fo(task.query_x, held), task.query_y), list(fo.parameters()))
    names = [n for n, _ in fo.named_parameters()]
    assert any(not torch.allclose(a, g[n]) for n, a in zip(names, without))


def test_anil_and_protomaml_refuse_what_they_cannot_do():
    with pytest.raises(ValueError, match="nn.Sequential\\(body, ..., head\\)"):
        ANIL(nn.Sequential(MLP([4, 3])), inner_lr=0.1)
    with pytest.raises(ValueError, match="task_batching='loop'"):
        ANIL(small_net(), inner_lr=0.1, task_batching="vmap")
    with pytest.raises(ValueError, match="task_batching='loop'"):
        ProtoMAML(small_body(), inner_lr=0.1, task_batching="vmap")
    learner = ProtoMAML(small_body(), inner_lr=0.1)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="no example of labels \\[1\\]"):
        learner.adapt(x, torch.tensor([0, 2, 2]))


def test_predict_works_under_no_grad_as_the_evaluator_calls_it():
    task = tasks_for((1, 8, 8), n_tasks=1)[0]
    for learner in (ANIL(small_net(), inner_lr=0.3, inner_steps=2), ProtoMAML(small_body(), inner_lr=0.3)):
        with torch.no_grad():
            pred = learner.predict(task, inner_steps=3)
        assert pred.shape == task.query_y.shape


@pytest.mark.parametrize("first_order", [False, True], ids=["exact", "first-order"])
def test_a_protomaml_step_is_a_maml_step_from_the_prototype_head(first_order):
    """The inner step treats body and head as separate variables: it equals MAML's step on Sequential(body, Linear)
    whose head is set to the prototype head (and so do the adapted parameters after two steps)."""
    task = tasks_for((1, 8, 8), n_tasks=1)[0]
    proto = ProtoMAML(small_body(), inner_lr=0.3, inner_steps=2, first_order=first_order)
    ours = proto.adapt(task.support_x, task.support_y, first_order=first_order)
    body = small_body()
    with torch.no_grad():
        w, b = prototype_head(body(task.support_x).flatten(1), task.support_y, 3)
    net = nn.Sequential(body, nn.Flatten(), nn.Linear(w.shape[1], 3)).double()
    with torch.no_grad():
        net[2].weight.copy_(w), net[2].bias.copy_(b)
    maml = MAML(net, inner_lr=0.3, inner_steps=2, first_order=first_order)
    theirs = maml.adapt(task.support_x, task.support_y, first_order=first_order)
    for name, p in ours.items():
        other = theirs["2." + name.split(".", 1)[1]] if name.startswith("head.") else theirs["0." + name]
        torch.testing.assert_close(p, other)
