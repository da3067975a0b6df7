"""Learning to learn by gradient descent by gradient descent (Andrychowicz et al., 2016).

A hand-designed optimiser is a fixed rule ``theta_{t+1} = theta_t - lr * h(g_1..g_t)``. Here
the rule is a network: a small two-layer LSTM ``m_phi`` reads each coordinate's gradient and
outputs that coordinate's update,

    theta_{t+1} = theta_t + u_t,    (u_t, s_{t+1}) = m_phi(preprocess(g_t), s_t),

with the same weights phi for every coordinate ("coordinatewise"), each coordinate keeping its
own LSTM state s. The optimiser is trained by gradient descent on the *optimizee's* loss
along its trajectory, ``L(phi) = E_f [sum_t f(theta_t)]``, by backpropagation through the
unrolled optimisation, truncated to ``unroll`` steps at a time over a ``horizon``. As in the
paper, the optimizee's second derivatives are dropped: the gradient ``g_t`` fed to the LSTM is
a constant for the meta-gradient (``dg_t / dphi = 0``), so only first derivatives of ``f``
are needed.

Gradients span many orders of magnitude, so they are preprocessed (the paper's appendix)::

    g -> (log|g| / p, sign g)   if |g| >= e^-p,        (-1, e^p g)   otherwise.

Problems (optimizees) are batches of independent functions sharing one flat parameter
tensor, with ``theta0`` and ``losses(theta, step) -> (B,)``: :class:`~mlcourse.learned_optimizers.problems.QuadraticProblems`
(``f(theta) = ||W theta - y||^2``, the paper's first experiment) and :class:`~mlcourse.learned_optimizers.problems.DigitsMLP`
(a one-hidden-layer network on the handwritten digits that scikit-learn ships).

Modules: :mod:`~mlcourse.learned_optimizers.lstm` (the optimiser network),
:mod:`~mlcourse.learned_optimizers.problems` (the optimizees),
:mod:`~mlcourse.learned_optimizers.train` (meta-training by truncated backpropagation through
time, and running learned and hand-designed optimisers).
"""
from .lstm import LSTMOptimizer, preprocess_gradients
from .problems import DigitsMLP, QuadraticProblems
from .train import (HAND_DESIGNED, meta_train_optimizer, run_learned, run_torch_optimizer, tune_learning_rate,
                    unrolled_meta_loss)

__all__ = ["preprocess_gradients", "LSTMOptimizer", "QuadraticProblems", "DigitsMLP", "unrolled_meta_loss",
           "meta_train_optimizer", "run_learned", "run_torch_optimizer", "tune_learning_rate", "HAND_DESIGNED"]
