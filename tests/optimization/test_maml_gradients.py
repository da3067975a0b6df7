"""Meta-gradients against float64 finite differences and the hand-derived first-order formula."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlcourse.backbones import MLP, Conv4
from mlcourse.episodes import Episode
from mlcourse.learner import StepResult
from mlcourse.optimization import (MAML, GradientLearner, MetaSGD, Reptile, adapt, functional_forward, inner_step,
                                    parameters_of, update)


def conv_net():
    torch.manual_seed(0)
    return nn.Sequential(Conv4(hidden=3, n_blocks=2, track_running_stats=False, channels_last=False), nn.Linear(3 * 2 * 2, 3)).double()


def mlp_net():
    torch.manual_seed(0)
    return nn.Sequential(MLP([4, 6, 5, 3])).double()


def tasks_for(shape, n_tasks=2, n_way=3, k_shot=2, n_query=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_tasks):
        out.append(Episode(torch.randn(n_way * k_shot, *shape, generator=g, dtype=torch.float64),
                           torch.arange(n_way).repeat_interleave(k_shot),
                           torch.randn(n_way * n_query, *shape, generator=g, dtype=torch.float64),
                           torch.arange(n_way).repeat_interleave(n_query), torch.arange(n_way)))
    return out


NETS = {"conv+batchnorm": (conv_net, (1, 8, 8)), "mlp": (mlp_net, (4,))}


def finite_difference(learner, tasks, eps=1e-6):
    """Central differences of the mean query loss, one coordinate at a time."""
    grads = {}
    with torch.no_grad():
        for name, p in learner.named_parameters():
            g = torch.zeros_like(p)
            for i in np.ndindex(*p.shape):
                old = p[i].item()
                p[i] = old + eps
                with torch.enable_grad():
                    plus = learner.meta_loss(tasks)[0].item()
                p[i] = old - eps
                with torch.enable_grad():
                    minus = learner.meta_loss(tasks)[0].item()
                p[i] = old
                g[i] = (plus - minus) / (2 * eps)
            grads[name] = g
    return grads


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("steps", [1, 2])
def test_second_order_matches_finite_differences(net, steps):
    make, shape = NETS[net]
    learner = MAML(make(), inner_lr=0.3, inner_steps=steps)
    tasks = tasks_for(shape)
    analytic = learner.meta_gradient(tasks)
    numeric = finite_difference(learner, tasks)
    for name in analytic:
        torch.testing.assert_close(analytic[name], numeric[name], rtol=1e-6, atol=1e-8, msg=name)


@pytest.mark.parametrize("net", NETS)
def test_first_order_differs_from_exact(net):
    make, shape = NETS[net]
    tasks = tasks_for(shape)
    exact = MAML(make(), inner_lr=0.3).meta_gradient(tasks)
    fo = MAML(make(), inner_lr=0.3, first_order=True).meta_gradient(tasks)
    diff = max((exact[n] - fo[n]).abs().max().item() for n in exact)
    assert diff > 1e-4, "the Hessian term should change the meta-gradient"


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("steps", [1, 3])
def test_first_order_matches_hand_derived_formula(net, steps):
    """FOMAML: the gradient of the query loss at the adapted weights, phi = theta - a grad L_sup, repeated."""
    make, shape = NETS[net]
    model = make()
    learner = MAML(model, inner_lr=0.3, inner_steps=steps, first_order=True)
    tasks = tasks_for(shape)
    fo = learner.meta_gradient(tasks)
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for task in tasks:
        phi = {n: p.detach().clone() for n, p in model.named_parameters()}
        for _ in range(steps):
            for p in phi.values():
                p.requires_grad_(True)
            loss = F.cross_entropy(functional_forward(model, phi, task.support_x), task.support_y)
            g = torch.autograd.grad(loss, list(phi.values()))
            phi = {n: (p - 0.3 * gi).detach() for (n, p), gi in zip(phi.items(), g)}
        for p in phi.values():
            p.requires_grad_(True)
        qloss = F.cross_entropy(functional_forward(model, phi, task.query_x), task.query_y)
        for (n, _), gi in zip(phi.items(), torch.autograd.grad(qloss, list(phi.values()))):
            expected[n] += gi / len(tasks)
    for n in expected:
        torch.testing.assert_close(fo["model." + n], expected[n], rtol=1e-10, atol=1e-12, msg=n)


def test_meta_backward_equals_meta_gradient():
    make, shape = NETS["conv+batchnorm"]
    learner = MAML(make(), inner_lr=0.3, inner_steps=2)
    tasks = tasks_for(shape, n_tasks=3)
    expected = learner.meta_gradient(tasks)
    learner.zero_grad()
    learner.meta_backward(tasks)
    for n, p in learner.named_parameters():
        torch.testing.assert_close(p.grad, expected[n], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_equals_loop_without_batchnorm(first_order):
    tasks = tasks_for((4,), n_tasks=3)
    loop = MAML(mlp_net(), inner_lr=0.3, inner_steps=2, first_order=first_order).meta_gradient(tasks)
    vm = MAML(mlp_net(), inner_lr=0.3, inner_steps=2, first_order=first_order,
              task_batching="vmap").meta_gradient(tasks)
    for n in loop:
        torch.testing.assert_close(vm[n], loop[n], rtol=1e-10, atol=1e-12, msg=n)


def test_vmap_equals_loop_for_a_conv_net_without_batchnorm():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(3 * 4 * 4, 3)).double()
    tasks = tasks_for((1, 8, 8), n_tasks=3)
    loop = MAML(net, inner_lr=0.3, inner_steps=2).meta_gradient(tasks)
    vm = MAML(net, inner_lr=0.3, inner_steps=2, task_batching="vmap").meta_gradient(tasks)
    for n in loop:
        torch.testing.assert_close(vm[n], loop[n], rtol=1e-10, atol=1e-12, msg=n)


@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_refuses_batchnorm(first_order):
    with pytest.raises(ValueError, match="BatchNorm"):
        MAML(conv_net(), task_batching="vmap", first_order=first_order)


def test_meta_sgd_with_fixed_rates_equals_maml_with_those_rates():
    make, shape = NETS["conv+batchnorm"]
    tasks = tasks_for(shape)
    # uniform rates: identical to MAML with that inner_lr
    msgd = MetaSGD(make(), inner_lr=0.3, inner_steps=2)
    maml = MAML(make(), inner_lr=0.3, inner_steps=2)
    g1, g2 = msgd.meta_gradient(tasks), maml.meta_gradient(tasks)
    for n in g2:
        torch.testing.assert_close(g1["model." + n.removeprefix("model.")], g2[n], rtol=1e-10, atol=1e-12)
    # arbitrary per-parameter rates: identical to the shared inner loop with those rates
    torch.manual_seed(3)
    with torch.no_grad():
        for r in msgd.lrs:
            r.uniform_(0.05, 0.5)
    rates = {n: r.detach().clone() for n, r in msgd.inner_lrs().items()}
    model = msgd.model
    loss = 0
    for t in tasks:
        phi = adapt(model, parameters_of(model), t.support_x, t.support_y, inner_lr=rates, inner_steps=2)
        loss = loss + F.cross_entropy(functional_forward(model, phi, t.query_x), t.query_y) / len(tasks)
    manual = torch.autograd.grad(loss, list(model.parameters()))
    got = msgd.meta_gradient(tasks)
    for (n, _), g in zip(model.named_parameters(), manual):
        torch.testing.assert_close(got["model." + n], g, rtol=1e-10, atol=1e-12)
    # and the rates themselves get a finite, non-zero meta-gradient
    lr_grads = [got[f"lrs.{i}"] for i in range(len(msgd.lrs))]
    assert all(torch.isfinite(g).all() for g in lr_grads)
    assert sum(g.abs().sum().item() for g in lr_grads) > 0


def test_reptile_one_step_is_sgd_on_the_task_loss():
    make, shape = NETS["mlp"]
    task = tasks_for(shape, n_tasks=1)[0]
    a, b = 0.3, 0.7
    reptile = Reptile(make(), inner_lr=a, inner_steps=1)
    opt = torch.optim.SGD(reptile.parameters(), lr=b)
    reptile.meta_step([task], opt)
    plain = make()
    opt2 = torch.optim.SGD(plain.parameters(), lr=a * b)
    x, y = torch.cat([task.support_x, task.query_x]), torch.cat([task.support_y, task.query_y])
    opt2.zero_grad()
    F.cross_entropy(plain(x), y).backward()
    opt2.step()
    for p, q in zip(reptile.model.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_reptile_moves_towards_adapted_weights():
    make, shape = NETS["mlp"]
    tasks = tasks_for(shape, n_tasks=2)
    reptile = Reptile(make(), inner_lr=0.1, inner_steps=3)
    theta = {n: p.detach().clone() for n, p in reptile.model.named_parameters()}
    expected = {n: torch.zeros_like(p) for n, p in theta.items()}
    for t in tasks:
        phi = adapt(reptile.model, parameters_of(reptile.model), torch.cat([t.support_x, t.query_x]),
                    torch.cat([t.support_y, t.query_y]), inner_lr=0.1, inner_steps=3, track_meta_grad=False)
        for n in theta:
            expected[n] += (theta[n] - phi[n]) / len(tasks)
    got = reptile.meta_gradient(tasks)
    for n in expected:
        torch.testing.assert_close(got["model." + n], expected[n], rtol=1e-10, atol=1e-12)


def test_meta_gradient_leaves_grad_as_it_was():
    make, shape = NETS["mlp"]
    tasks = tasks_for(shape)
    for learner in (MAML(make(), inner_lr=0.3), Reptile(make(), inner_lr=0.1, inner_steps=2)):
        params = list(learner.parameters())
        params[0].grad = torch.full_like(params[0], 7.0)
        first = learner.meta_gradient(tasks)
        assert torch.equal(params[0].grad, torch.full_like(params[0], 7.0))
        assert all(p.grad is None for p in params[1:])
        # and the accumulated gradient did not leak into the result: the same answer again
        second = learner.meta_gradient(tasks)
        for n in first:
            torch.testing.assert_close(first[n], second[n], rtol=0, atol=0)


def test_meta_backward_reports_the_mean_query_loss_and_outputs():
    make, shape = NETS["mlp"]
    tasks = tasks_for(shape, n_tasks=3)
    for learner in (MAML(make(), inner_lr=0.3, inner_steps=2), MAML(make(), inner_lr=0.3, task_batching="vmap"),
                    Reptile(make(), inner_lr=0.1, inner_steps=2)):
        result = learner.meta_backward(tasks)
        assert isinstance(result, StepResult) and len(result.outputs) == 3
        by_task = [F.cross_entropy(learner.adapted_output(t) if isinstance(learner, MAML) else
                                   learner(t.query_x, adapt(learner.model, parameters_of(learner.model),
                                                            torch.cat([t.support_x, t.query_x]),
                                                            torch.cat([t.support_y, t.query_y]), inner_lr=0.1,
                                                            inner_steps=2, track_meta_grad=False)),
                                   t.query_y).item() for t in tasks]
        assert result.loss == pytest.approx(np.mean(by_task), rel=1e-9), type(learner).__name__
        for out, t in zip(result.outputs, tasks):
            assert out.shape == (len(t.query_y), 3) and not out.requires_grad


def test_reptile_is_a_gradient_learner_not_a_maml():
    reptile = Reptile(mlp_net())
    assert isinstance(reptile, GradientLearner) and not isinstance(reptile, MAML)
    assert not hasattr(reptile, "meta_loss")
    assert (reptile.inner_lr, reptile.inner_steps) == (0.1, 5)
    with pytest.raises(NotImplementedError):
        GradientLearner(mlp_net(), inner_lr=0.1, inner_steps=1).meta_backward(tasks_for((4,)))


def test_update_rule_and_inner_step():
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    g = 3 * w  # depends on w: a second-order path
    kept = torch.ones(2, dtype=torch.float64)
    out = update({"w": w, "b": kept}, {"w": g, "b": None}, 0.1)
    torch.testing.assert_close(out["w"], w - 0.1 * g)
    assert out["b"] is kept, "a parameter without a gradient is kept as it is"
    (exact,) = torch.autograd.grad(out["w"].sum(), w)
    fo = update({"w": w}, {"w": g}, 0.1, first_order=True)
    (first,) = torch.autograd.grad(fo["w"].sum(), w)
    torch.testing.assert_close(exact, torch.full_like(w, 0.7))  # 1 - 0.1 * 3
    torch.testing.assert_close(first, torch.ones_like(w))  # the gradient is a constant
    with pytest.raises(KeyError, match="no inner learning rate for parameter 'w'"):
        update({"w": w}, {"w": g}, {"v": torch.ones(2)})
    # one inner step of a linear model: p - lr * dL/dp, and the support loss before the step
    model = nn.Linear(2, 1, bias=False).double()
    x, y = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    params = parameters_of(model)
    new, loss = inner_step(model, params, x, y, inner_lr=0.2, loss_fn=F.mse_loss)
    expected_grad = 2 * ((x @ params["weight"].T - y) * x).mean(0, keepdim=True)
    torch.testing.assert_close(new["weight"], params["weight"] - 0.2 * expected_grad)
    torch.testing.assert_close(loss, F.mse_loss(model(x), y))
    with pytest.raises(ValueError, match="inner_steps"):
        adapt(model, params, x, y, inner_lr=0.1, inner_steps=-1)


def test_adaptation_does_not_touch_the_model():
    make, shape = NETS["conv+batchnorm"]
    learner = MAML(make(), inner_lr=0.3, inner_steps=3)
    before = copy.deepcopy(learner.state_dict())
    learner.predict(tasks_for(shape, n_tasks=1)[0], inner_steps=5)
    for k, v in learner.state_dict().items():
        assert torch.equal(v, before[k])


def test_clear_errors():
    with pytest.raises(ValueError, match="inner_steps"):
        MAML(mlp_net(), inner_steps=0)
    with pytest.raises(ValueError, match="task_batching"):
        MAML(mlp_net(), task_batching="threads")
    with pytest.raises(ValueError, match="at least one task"):
        MAML(mlp_net()).meta_backward([])
    with pytest.raises(ValueError, match="one shape"):
        MAML(mlp_net(), task_batching="vmap").meta_loss(tasks_for((4,), k_shot=1)[:1] + tasks_for((4,), k_shot=2)[:1])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        Conv4()(torch.zeros(2, 28, 28))


class _Tied(nn.Module):
    """Two linear layers that hold one weight (tied), and a submodule that appears twice."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.shared = nn.Linear(4, 3)
        self.again = nn.ModuleList([self.shared])

    def forward(self, x):
        return self.shared(torch.relu(self.b(torch.relu(self.a(x)))))


@pytest.mark.parametrize("make", [lambda: nn.Sequential(Conv4(hidden=8, track_running_stats=False), nn.Linear(8, 5)),
                                  _Tied])
def test_functional_forward_equals_functional_call(make):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(6, 1, 28, 28) if isinstance(model, nn.Sequential) else torch.randn(6, 4)
    own = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = {n: (p * 1.5 + 0.1).requires_grad_() for n, p in own.items()}
    # on a copy: torch 2.14's functional_call leaves the parameters of a module reachable twice replaced
    expected = torch.func.functional_call(copy.deepcopy(model), params, (x,))
    out = functional_forward(model, params, x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # gradients reach the given tensors, and the model's own parameters are back and untouched
    grads = torch.autograd.grad(out.square().sum(), list(params.values()))
    ref = torch.autograd.grad(expected.square().sum(), list(params.values()))
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r, rtol=0, atol=0)
    for n, p in model.named_parameters():
        assert isinstance(p, nn.Parameter) and p.grad is None
        torch.testing.assert_close(p.detach(), own[n], rtol=0, atol=0)
    if isinstance(model, _Tied):
        assert model.b.weight is model.a.weight


def test_functional_forward_partial_dict_failure_and_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    x = torch.randn(5, 3)
    partial = {"2.weight": torch.zeros(2, 3)}
    torch.testing.assert_close(functional_forward(model, partial, x),
                               torch.func.functional_call(model, partial, (x,)), rtol=0, atol=0)
    with pytest.raises(RuntimeError):  # a wrong shape fails inside the call ...
        functional_forward(model, {"0.weight": torch.zeros(4, 4)}, x)
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())  # ... and the parameters are back
    assert model[0].weight.shape == (3, 3)
    buffers = {"1.running_mean": torch.ones(3)}  # buffers go through functional_call
    model.eval()
    torch.testing.assert_close(functional_forward(model, buffers, x),
                               torch.func.functional_call(model, buffers, (x,)), rtol=0, atol=0)
