"""Adding a learner: a class with ``meta_step`` and ``predict`` is all the loop and the evaluator need.

This is the example of the API page (book/api.md), run as a test: a linear embedding of the
pixels trained with the prototypical loss, written against the protocol alone.
"""
import torch
import torch.nn.functional as F
from torch import nn

from mlcourse.data import FontGlot
from mlcourse.evaluation import evaluate, paired_difference
from mlcourse.learner import StepResult, is_learner
from mlcourse.metric import pixel_nearest_neighbour, prototype_logits, prototypes
from mlcourse.training import meta_train


class LinearProtoNet(nn.Module):
    """Prototypes in a learned linear projection of the pixels."""

    def __init__(self, n_pixels: int = 28 * 28, dim: int = 64) -> None:
        super().__init__()
        self.project = nn.Linear(n_pixels, dim)

    def logits(self, episode):
        zs, zq = self.project(episode.support_x.flatten(1)), self.project(episode.query_x.flatten(1))
        return prototype_logits(zq, prototypes(zs, episode.support_y, episode.n_way))

    def meta_step(self, tasks, optimizer):
        optimizer.zero_grad(set_to_none=True)
        outputs = [self.logits(t) for t in tasks]
        loss = torch.stack([F.cross_entropy(o, t.query_y) for o, t in zip(outputs, tasks)]).mean()
        loss.backward()
        optimizer.step()
        return StepResult(loss.item(), [o.detach() for o in outputs])

    @torch.no_grad()
    def predict(self, episode):
        return self.logits(episode).argmax(dim=1)


def test_a_new_learner_trains_and_evaluates_with_the_shared_loop(tiny_root):
    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    evaluation = FontGlot("evaluation", preset="tiny", root=tiny_root, progress=False)
    torch.manual_seed(0)
    learner = LinearProtoNet()
    assert is_learner(learner)
    history = meta_train(learner, background, n_steps=60, meta_batch_size=4, n_way=5, k_shot=1, n_query=5,
                         outer_lr=1e-3, val_set=evaluation, val_every=30, val_episodes=20, device="cpu",
                         progress=False)
    assert history.val_step == [30, 60] and len(history.loss) > 0
    ours = evaluate(learner, evaluation, n_way=5, k_shot=1, n_query=5, n_episodes=100, seed=3, device="cpu")
    pixels = evaluate(pixel_nearest_neighbour, evaluation, n_way=5, k_shot=1, n_query=5, n_episodes=100, seed=3)
    assert ours.mean > 0.2 + 3 * ours.half_width, f"not above chance: {ours}"
    assert paired_difference(ours, pixels).n_episodes == 100
