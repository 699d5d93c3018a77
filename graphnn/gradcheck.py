"""``check_gradients``: compare a compiled network's backward pass with finite differences.

The way to trust a new op: build a small network that uses it, and check that the
gradients ``net.loss_and_grads`` computes match central differences of the loss,
computed in float64::

    report = gn.check_gradients(net, X, y)
    print(report)                       # worst relative error per parameter
    assert report.ok()

The differences are taken on a float64 copy of the network (the same graph compiled in
float64, with the same parameters), so a float32 network is compared with float64 truth
and its errors show float32 rounding (about 1e-4 to 1e-3); a float64 network with a right
backward pass shows about 1e-7 or less.  ReLU-like kinks closer to a pre-activation than
``eps`` make a finite difference meaningless there: use smooth data or small ``eps``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["check_gradients", "GradientReport", "ParamCheck"]


@dataclass
class ParamCheck:
    """One parameter: its worst relative error, where, and the two values compared there."""
    name: str
    shape: tuple
    checked: int                     # entries compared
    worst: float                     # worst relative error
    index: tuple                     # entry of the worst error
    analytic: float                  # net.loss_and_grads there
    numeric: float                   # the float64 central difference there


@dataclass
class GradientReport:
    """The result of ``check_gradients``: a ``ParamCheck`` per parameter, in order."""
    dtype: str
    eps: float
    loss: float
    params: list = field(default_factory=list)

    @property
    def worst(self) -> float:
        """The worst relative error over all parameters."""
        return max((p.worst for p in self.params), default=0.0)

    def default_tol(self) -> float:
        return 1e-5 if self.dtype == "float64" else 1e-2

    def ok(self, tol: float | None = None) -> bool:
        """Every parameter's worst relative error within ``tol`` (default 1e-5 for a float64
        network, 1e-2 for float32)."""
        return self.worst <= (self.default_tol() if tol is None else tol)

    def __str__(self) -> str:
        head = (f"gradient check ({self.dtype} network against float64 central differences, "
                f"eps {self.eps:g}, loss {self.loss:.6g}):")
        width = max((len(p.name) for p in self.params), default=4)
        lines = [head]
        for p in self.params:
            lines.append(f"  {p.name.ljust(width)}  worst relative error {p.worst:.2e} at "
                         f"{list(p.index)} (analytic {p.analytic:.6g}, numeric {p.numeric:.6g}"
                         f"; {p.checked} of {int(np.prod(p.shape))} entries)")
        verdict = "ok" if self.ok() else "MISMATCH"
        lines.append(f"  worst {self.worst:.2e}: {verdict} (tolerance {self.default_tol():g})")
        return "\n".join(lines)


def _relative(a: np.ndarray, b: np.ndarray, floor: float) -> np.ndarray:
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)


def check_gradients(net, X, y, eps: float = 1e-6, entries: int | None = None,
                    seed: int = 0, floor: float = 1e-6) -> GradientReport:
    """Compare ``net.loss_and_grads(X, y)`` with central differences of the loss.

    Arguments:
        net: a compiled network (``model.compile(...)``); it is not changed.
        X, y: a few rows of inputs and targets (a handful is enough: each checked entry
            costs two evaluations of the loss).
        eps: the finite-difference step (in float64).
        entries: check at most this many entries of each parameter, drawn with ``seed``
            (None: every entry).
        floor: relative errors divide by max(|analytic|, |numeric|, floor), so entries whose
            gradient is about zero are compared absolutely.

    Returns: a ``GradientReport``; ``print`` it, or test ``report.ok()``.
    """
    from .model import CompiledModel
    if not isinstance(net, CompiledModel):
        raise ValueError(f"check_gradients needs a compiled network (model.compile(...)), "
                         f"got {type(net).__name__}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
    if entries is not None and (isinstance(entries, bool) or not isinstance(entries, int)
                                or entries < 1):
        raise ValueError(f"entries must be a positive integer or None, got {entries!r}")
    dropout = [n for n in net.model.nodes
               if type(n).__name__ == "Dropout" and getattr(n, "rate", 0) > 0]
    if dropout:
        raise ValueError("check_gradients needs a deterministic loss, and this network has "
                         f"Dropout ({dropout[0].name}); check the model without it")
    loss_value, analytic = net.loss_and_grads(X, y)
    params = {k: np.asarray(v, np.float64) for k, v in net.get_params().items()}
    if net.dtype == np.float64 and type(net.backend).__name__ == "CpuBackend":
        twin = net
    else:                                   # the same graph in float64, on the CPU
        twin = CompiledModel(net.model, loss=net.loss.name, seed=0, dtype="float64")
    base = twin.get_params()
    rng = np.random.default_rng(seed)
    report = GradientReport(dtype=net.dtype.name, eps=float(eps), loss=float(loss_value))
    try:
        twin.set_params(params)

        def loss_at(name, idx, value):
            trial = dict(params)
            trial[name] = params[name].copy()
            trial[name][idx] = value
            twin.set_params(trial)
            return twin.evaluate(X, y)["loss"]

        for name, value in params.items():
            all_idx = list(np.ndindex(value.shape))
            if entries is not None and entries < len(all_idx):
                pick = rng.choice(len(all_idx), size=entries, replace=False)
                all_idx = [all_idx[i] for i in sorted(pick)]
            numeric = np.array([(loss_at(name, i, value[i] + eps)
                                 - loss_at(name, i, value[i] - eps)) / (2 * eps)
                                for i in all_idx])
            got = np.array([float(analytic[name][i]) for i in all_idx])
            rel = _relative(got, numeric, floor)
            k = int(np.argmax(rel)) if len(rel) else 0
            report.params.append(ParamCheck(
                name=name, shape=tuple(value.shape), checked=len(all_idx),
                worst=float(rel[k]) if len(rel) else 0.0,
                index=tuple(int(j) for j in all_idx[k]) if all_idx else (),
                analytic=float(got[k]) if len(rel) else 0.0,
                numeric=float(numeric[k]) if len(rel) else 0.0))
    finally:
        twin.set_params(base if twin is not net else params)
    return report
