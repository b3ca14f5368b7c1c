"""Hard Concrete gates (Louizos, Welling & Kingma 2017, "Learning Sparse Neural Networks through
L0 Regularization", ICLR 2018, arXiv:1712.01312, section 2.2 and appendix).

A gate ``z`` in ``[0, 1]`` with location ``log_alpha``, temperature ``beta`` and stretch
``(gamma, zeta)`` (``gamma < 0 < 1 < zeta``) is sampled as

    u ~ U(0, 1),   s = sigmoid((log u - log(1 - u) + log_alpha) / beta),
    s_bar = s (zeta - gamma) + gamma,   z = min(1, max(0, s_bar)),

so ``z`` is exactly 0 with positive probability and exactly 1 with positive probability, and

    P(z != 0) = sigmoid(log_alpha - beta log(-gamma / zeta))

is the expected-L0 term of the loss (differentiable in ``log_alpha``).

Test-time gate
--------------
The paper's estimator is ``clip(sigmoid(log_alpha) (zeta - gamma) + gamma, 0, 1)``; some code
(e.g. PolicyEngine's L0 package) uses ``log_alpha / beta`` in the sigmoid instead. They agree only
at ``beta = 1``. calibopt uses the second one, because it is the **median of the training-time
gate**: ``s`` is monotone in the logistic noise, whose median is 0, so ``median(s) =
sigmoid(log_alpha / beta)`` and clipping commutes with the median. Two consequences:

* the deterministic gate is 0 exactly when ``P(z != 0) <= 1/2`` (``log_alpha <= beta
  log(-gamma/zeta)``, i.e. ``<= -1.599`` with the defaults) and 1 exactly when
  ``P(z = 1) >= 1/2`` (``log_alpha >= beta log((1 - gamma)/(zeta - 1))``, ``>= 1.599``): the
  non-zeros kept at the end are the gates the L0 penalty has not made more likely closed
  than open;
* between the two it is the value the sampled gate exceeds half the time, so the weights the
  method returns are those the loss saw most typically during training.

The paper's gate is 0 only for ``log_alpha <= log(-gamma/zeta) = -2.398``: it keeps gates that
training closed more often than not (e.g. at ``log_alpha = -2``, ``P(z != 0) = 0.40`` but the
paper's gate is 0.043).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import InvalidProblemError

__all__ = [
    "GateSpec",
    "deterministic_gates",
    "prob_nonzero",
    "sample_gates",
]


@dataclass(frozen=True)
class GateSpec:
    """Hard Concrete parameters: temperature ``beta`` and stretch interval ``(gamma, zeta)``.

    Defaults are the paper's: ``beta = 2/3``, ``(gamma, zeta) = (-0.1, 1.1)``.
    """

    beta: float = 2.0 / 3.0
    gamma: float = -0.1
    zeta: float = 1.1

    def __post_init__(self) -> None:
        for name in ("beta", "gamma", "zeta"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v):
                raise InvalidProblemError(f"`{name}` must be a finite number, got {v!r}.")
        if not self.beta > 0:
            raise InvalidProblemError(f"`beta` (temperature) must be > 0, got {self.beta!r}.")
        if not (self.gamma < 0 and self.zeta > 1):
            raise InvalidProblemError(
                f"the stretch interval needs gamma < 0 and zeta > 1 (so gates reach exactly 0 "
                f"and 1), got gamma={self.gamma!r}, zeta={self.zeta!r}."
            )

    @property
    def l0_shift(self) -> float:
        """``beta log(-gamma / zeta)``: ``P(z != 0) = sigmoid(log_alpha - l0_shift)``."""
        return self.beta * math.log(-self.gamma / self.zeta)

    @property
    def zero_threshold(self) -> float:
        """The deterministic gate is exactly 0 for ``log_alpha <= zero_threshold``."""
        return self.l0_shift

    @property
    def one_threshold(self) -> float:
        """The deterministic gate is exactly 1 for ``log_alpha >= one_threshold``."""
        return self.beta * math.log((1.0 - self.gamma) / (self.zeta - 1.0))

    def log_alpha_for(self, p_nonzero: float) -> float:
        """The ``log_alpha`` at which ``P(z != 0) = p_nonzero``."""
        if not 0.0 < p_nonzero < 1.0:
            raise InvalidProblemError(f"a gate probability must lie in (0, 1), got {p_nonzero!r}.")
        return math.log(p_nonzero / (1.0 - p_nonzero)) + self.l0_shift


def prob_nonzero(log_alpha: torch.Tensor, spec: GateSpec) -> torch.Tensor:
    """``P(z != 0) = sigmoid(log_alpha - beta log(-gamma/zeta))``, the expected L0 per gate."""
    return torch.sigmoid(log_alpha - spec.l0_shift)


def deterministic_gates(log_alpha: torch.Tensor, spec: GateSpec) -> torch.Tensor:
    """Test-time gate, the median of the sampled gate:
    ``clip(sigmoid(log_alpha / beta) (zeta - gamma) + gamma, 0, 1)``."""
    s = torch.sigmoid(log_alpha / spec.beta)
    return (s * (spec.zeta - spec.gamma) + spec.gamma).clamp_(0.0, 1.0)


def sample_gates(
    log_alpha: torch.Tensor, u: torch.Tensor, spec: GateSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gates for uniform draws ``u`` in (0, 1) (the reparametrised sample).

    Returns
    -------
    z : Tensor
        The gates, in [0, 1].
    s : Tensor
        The unstretched ``sigmoid((logit(u) + log_alpha) / beta)``, which the gradient needs.
    """
    s = torch.sigmoid((torch.logit(u) + log_alpha) / spec.beta)
    z = (s * (spec.zeta - spec.gamma) + spec.gamma).clamp(0.0, 1.0)
    return z, s
