"""The Hard-Concrete calibration model: loss and hand-written gradient, in place on the device.

Variables, one pair per unit ``i`` with ``d_i > 0`` (units with ``d_i = 0`` stay at 0):
``theta_i`` (log-weight, started at ``log d_i``) and ``log_alpha_i`` (gate location). With a
gate ``z_i`` (:mod:`.gates`) the weight is ``w_i = exp(theta_i) z_i`` and the loss is

    L = sum_j omega_j (X_j w - b_j)^2 + lambda_l0 sum_i P(z_i != 0) + lambda_l2 sum_i (w_i/d_i)^2

where the first term is calibopt's target loss (:mod:`calibopt.loss`, ``omega`` from
:func:`calibopt.loss.loss_weights`). The rows of ``X`` and ``b`` are scaled by
``sqrt(omega_j)`` once, on the host in float64, so the fit is ``||X~ w - b~||^2`` and float32
sums stay near 1 whatever the units of the targets.

Gradient (``r = X~ w - b~``, ``g_w = 2 X~' r + 2 lambda_l2 w / d^2``)::

    dL/dtheta_i     = g_w,i w_i
    dL/dlog_alpha_i = g_w,i exp(theta_i) (zeta - gamma) / beta s_i (1 - s_i) [0 < z_i < 1]
                      + lambda_l0 p_i (1 - p_i),        p_i = P(z_i != 0)

Each epoch is two sparse products (``X~ w`` with the CSR of ``X~`` and ``X~' r`` with the CSR
of its transpose, both stored once on the device) and about twenty in-place vector passes
on preallocated buffers: no autograd graph, no per-epoch allocation of unit-length vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .backend import to_torch_csr
from .gates import GateSpec, deterministic_gates, prob_nonzero

__all__ = ["HardConcreteModel"]

_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input  # g s (1 - s)
_hardtanh_backward = torch.ops.aten.hardtanh_backward.grad_input  # g [lo < x < hi]


class HardConcreteModel:
    """Parameters, data and buffers of one Hard-Concrete calibration on one device.

    Parameters
    ----------
    Xs
        ``scipy.sparse`` CSR, targets x free units, rows already scaled by ``sqrt(omega)``
        (ideally already in the model's dtype with int32 indices: then the CPU tensor shares
        its memory).
    bs
        Scaled targets ``sqrt(omega) * b``.
    rel_scale
        Per target, the factor turning a scaled residual into the reported relative error
        (``1 / (sqrt(omega_j) |b_j|)``, with ``|b_j|`` replaced by 1 where ``b_j = 0``).
    d
        Initial weights of the free units (all > 0).
    log_lower, log_upper
        Bounds on ``theta`` (logs of the weight bounds), or None when unbounded.
    spec
        Gate parameters.
    lambda_l0, lambda_l2
        Penalty weights (>= 0). ``lambda_l0`` may also be one value per unit (adaptive
        sparsity: a per-area price of keeping a unit).
    init_log_alpha
        Starting gate location of every unit.
    dtype, device
        torch dtype and device.
    """

    def __init__(
        self,
        Xs: sp.csr_matrix,
        bs: np.ndarray,
        rel_scale: np.ndarray,
        d: np.ndarray,
        *,
        log_lower: np.ndarray | None,
        log_upper: np.ndarray | None,
        spec: GateSpec,
        lambda_l0: float | np.ndarray,
        lambda_l2: float,
        init_log_alpha: float,
        dtype: Any,
        device: Any,
    ) -> None:
        self.spec = spec
        # per-unit lambda_l0 (adaptive sparsity): self.lambda_l0 stays a float (the largest
        # value, so "> 0" keeps its meaning) and _lambda_l0 holds one value per unit
        per_unit = np.ndim(lambda_l0) > 0
        self.lambda_l0 = float(np.max(lambda_l0)) if per_unit else float(lambda_l0)
        self.lambda_l2 = float(lambda_l2)
        self.dtype = dtype
        self.device = device
        self.m, self.n = Xs.shape
        kw = {"dtype": dtype, "device": device}
        self.X = to_torch_csr(torch, Xs, dtype, device)
        XT = Xs.T.tocsr()  # in Xs's dtype (float32 halves the cost of this transpose)
        self.XT = to_torch_csr(torch, XT, dtype, device)
        del XT
        self.b = torch.as_tensor(bs, **kw)
        self.rel_scale = torch.as_tensor(rel_scale, **kw)
        self.inv_d2 = torch.as_tensor(1.0 / d**2, **kw) if self.lambda_l2 > 0 else None
        self.log_lower = None if log_lower is None else torch.as_tensor(log_lower, **kw)
        self.log_upper = None if log_upper is None else torch.as_tensor(log_upper, **kw)
        self.log_w = torch.as_tensor(np.log(d), **kw).clone()
        self.project_()
        self.log_alpha = torch.full((self.n,), float(init_log_alpha), **kw)
        self.grad_log_w = torch.zeros(self.n, **kw)
        self.grad_log_alpha = torch.zeros(self.n, **kw)
        # work buffers, reused every epoch
        self._s = torch.empty(self.n, **kw)
        self._z = torch.empty(self.n, **kw)
        self._ew = torch.empty(self.n, **kw)
        self._w = torch.empty(self.n, **kw)
        self._gw = torch.empty(self.n, **kw)
        self._q = torch.empty(self.n, **kw)
        self._y = torch.empty(self.m, **kw)
        self._logit_eps = float(torch.finfo(dtype).eps)
        self._gamma = torch.tensor(spec.gamma, **kw)
        self._lambda_l0 = (
            torch.as_tensor(np.asarray(lambda_l0, dtype=np.float64), **kw)
            if per_unit
            else torch.tensor(self.lambda_l0, **kw).expand(self.n)
        )
        self._per_unit_l0 = per_unit

    # ------------------------------------------------------------------ parameters
    def parameters(self) -> list[torch.Tensor]:
        """``[log_w, log_alpha]`` (their ``.grad`` is set by :meth:`step_gradient`)."""
        return [self.log_w, self.log_alpha]

    def project_(self) -> None:
        """Clamp ``log_w`` into the log-bounds (projected gradient for weight bounds)."""
        if self.log_lower is not None or self.log_upper is not None:
            self.log_w.clamp_(min=self.log_lower, max=self.log_upper)

    def state(self) -> dict[str, np.ndarray]:
        """The parameters as float64 numpy arrays (host copies)."""
        return {
            "log_w": self.log_w.detach().to("cpu", torch.float64).numpy().copy(),
            "log_alpha": self.log_alpha.detach().to("cpu", torch.float64).numpy().copy(),
        }

    def load_state(self, log_w: Any, log_alpha: Any) -> None:
        """Set the parameters (arrays or tensors of length ``n``)."""
        self.log_w.copy_(torch.as_tensor(log_w, dtype=self.dtype))
        self.log_alpha.copy_(torch.as_tensor(log_alpha, dtype=self.dtype))

    # ------------------------------------------------------------------ one epoch
    def sample_uniform_(self, generator: torch.Generator) -> torch.Tensor:
        """Draw the epoch's uniforms into the work buffer (one per unit) and return it."""
        return torch.rand(self.n, generator=generator, out=self._s)

    def step_gradient(self, u: torch.Tensor | None = None) -> torch.Tensor:
        """Sample the gates from uniforms ``u``, evaluate the training loss, set the gradients.

        ``u`` defaults to the buffer filled by :meth:`sample_uniform_`. Returns the fit term
        ``||X~ w - b~||^2`` as a 0-d tensor (left on the device: no synchronisation).
        The gradients land in ``log_w.grad`` and ``log_alpha.grad``.
        """
        sp_ = self.spec
        s, z, ew, w, q = self._s, self._z, self._ew, self._w, self._q
        if u is not None and u is not s:
            s.copy_(u)
        # s = sigmoid((logit(u) + log_alpha) / beta); z = clip(gamma + (zeta - gamma) s, 0, 1)
        s.logit_(self._logit_eps).add_(self.log_alpha).mul_(1.0 / sp_.beta).sigmoid_()
        torch.add(self._gamma, s, alpha=sp_.zeta - sp_.gamma, out=z).clamp_(0.0, 1.0)
        torch.exp(self.log_w, out=ew)
        torch.mul(ew, z, out=w)
        # fit: r = X~ w - b~; g_w = 2 X~' r (+ L2)
        r = torch.mv(self.X, w, out=self._y).sub_(self.b)
        fit = torch.dot(r, r)
        r.mul_(2.0)
        gw = torch.mv(self.XT, r, out=self._gw)
        if self.inv_d2 is not None:
            gw.addcmul_(w, self.inv_d2, value=2.0 * self.lambda_l2)
        torch.mul(gw, w, out=self.grad_log_w)
        # g_w exp(theta) s (1 - s), zeroed where the gate is clipped (z = 0 or 1): the
        # backward formulas of sigmoid and hardtanh do each in one pass
        ga = torch.mul(gw, ew, out=self.grad_log_alpha)
        _sigmoid_backward(ga, s, grad_input=ga)
        _hardtanh_backward(ga, z, 0.0, 1.0, grad_input=ga)
        scale = (sp_.zeta - sp_.gamma) / sp_.beta
        if self.lambda_l0 > 0:
            # + lambda_l0 p (1 - p), p = sigmoid(log_alpha - l0_shift)
            torch.sub(self.log_alpha, sp_.l0_shift, out=q).sigmoid_()
            _sigmoid_backward(self._lambda_l0, q, grad_input=q)
            torch.add(q, ga, alpha=scale, out=ga)
        else:
            ga.mul_(scale)
        self.log_w.grad = self.grad_log_w
        self.log_alpha.grad = self.grad_log_alpha
        return fit

    # ------------------------------------------------------------------ evaluation
    def deterministic_weights(self) -> torch.Tensor:
        """``exp(log_w) * deterministic gate`` (exact zeros where the gate is closed)."""
        return torch.exp(self.log_w) * deterministic_gates(self.log_alpha, self.spec)

    def expected_l0(self) -> float:
        """``sum_i P(z_i != 0)``."""
        return float(prob_nonzero(self.log_alpha, self.spec).sum())

    def evaluate(self, tolerance: torch.Tensor | None = None) -> dict[str, Any]:
        """Fit of the deterministic weights, as reported in progress and history.

        Parameters
        ----------
        tolerance
            Per-target relative tolerance on the device; if given, the result says whether
            every target is within it.

        Returns
        -------
        dict
            ``fit`` (target loss), ``live`` (non-zero weights), ``expected_l0``, ``l2``,
            ``objective`` (fit + lambda_l0 live + lambda_l2 l2: the deterministic loss),
            ``max_rel_error`` and ``mean_rel_error`` (|X_j w - b_j| / |b_j|), and
            ``within_tolerance`` (bool, only with ``tolerance``).
        """
        w = self.deterministic_weights()
        r = torch.mv(self.X, w) - self.b
        rel = (r * self.rel_scale).abs_()
        fit = float(torch.dot(r, r))
        live = int(torch.count_nonzero(w))
        l2 = float((w * w * self.inv_d2).sum()) if self.inv_d2 is not None else 0.0
        out: dict[str, Any] = {
            "fit": fit,
            "live": live,
            "expected_l0": self.expected_l0(),
            "l2": l2,
            "objective": fit + self._l0_price(w != 0) + self.lambda_l2 * l2,
            "max_rel_error": float(rel.max()),
            "mean_rel_error": float(rel.mean()),
        }
        if tolerance is not None:
            out["within_tolerance"] = bool((rel <= tolerance).all())
        return out

    def _l0_price(self, kept: torch.Tensor) -> float:
        """``lambda_l0 * sum(kept)``, or ``sum_i lambda_l0_i kept_i`` with per-unit values
        (``kept``: live indicators or gate probabilities)."""
        if self._per_unit_l0:
            return float(torch.dot(self._lambda_l0, kept.to(self._lambda_l0.dtype)))
        return self.lambda_l0 * float(kept.sum())

    def training_loss(self, fit: torch.Tensor) -> float:
        """The training objective for a sampled fit term (adds the expected penalties)."""
        out = float(fit) + self._l0_price(prob_nonzero(self.log_alpha, self.spec))
        if self.inv_d2 is not None:
            out += self.lambda_l2 * float((self._w * self._w * self.inv_d2).sum())
        return out

    def memory_bytes(self) -> int:
        """Bytes held on the device by the matrices and vectors of this model."""
        total = 0
        for A in (self.X, self.XT):
            total += sum(
                t.numel() * t.element_size()
                for t in (A.crow_indices(), A.col_indices(), A.values())
            )
        vecs = [
            self.b,
            self.rel_scale,
            self.log_w,
            self.log_alpha,
            self.grad_log_w,
            self.grad_log_alpha,
            self._s,
            self._z,
            self._ew,
            self._w,
            self._gw,
            self._q,
            self._y,
        ]
        vecs += [t for t in (self.inv_d2, self.log_lower, self.log_upper) if t is not None]
        return total + sum(v.numel() * v.element_size() for v in vecs)
