r"""The MSE exponent read off a d = infinity error curve (docs/numerics.md §"The exponent read
off the curves").

The scaling law of docs/theory.md §2.4 is a statement about the *envelope* of the staircase:
:math:`\mathrm{MSE}_\gamma(\alpha) \sim (C_\gamma/Z)(\alpha/\kappa_T)^{-(1-1/(2\gamma))}` when many
directions are learned. At finite m the curve is a sum of m smooth transitions followed by the
:math:`\alpha^{-1}` tail of a finite number of learned directions (every :math:`1-q_k` falls like
:math:`1/\alpha` past its threshold), so what a fit measures depends on the window. This module
fits :math:`\log \mathrm{MSE} = c - \beta \log \alpha` by least squares on a geometric grid inside
a window and reports, next to :math:`\hat\beta`, the spread of the local slope
:math:`d\log\mathrm{MSE}/d\log\alpha` in the window (a straight line has none) and the exact
exponent the theory gives for the estimator.

>>> from theory import HierarchicalModel
>>> f = fit_exponent(HierarchicalModel(m=3), (1e4, 1e5), n_alphas=9)
>>> round(f.exponent, 2), f.exact                       # past every threshold: the 1/alpha tail
(1.0, 8/13)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from theory import HierarchicalModel

__all__ = ["ExponentFit", "fit_exponent"]


@dataclass
class ExponentFit:
    """A least-squares exponent on a window of alpha."""

    exponent: float                 #: fitted beta in MSE ~ alpha^(-beta)
    prefactor: float                #: e^c: MSE ~ prefactor * alpha^(-beta) on the window
    exact: sp.Expr                  #: the theory's asymptotic exponent for this estimator
    window: tuple                   #: (alpha_lo, alpha_hi)
    local_slope_range: tuple        #: (min, max) of d log MSE / d log alpha on the window
    rms_residual: float             #: rms of the log-residuals (0 for an exact power law)
    estimator: str
    alphas: np.ndarray
    mse: np.ndarray

    def __repr__(self):
        lo, hi = self.local_slope_range
        return (f"ExponentFit({self.estimator}: MSE ~ alpha^-{self.exponent:.4f} on alpha in "
                f"[{self.window[0]:.4g}, {self.window[1]:.4g}], local slope {lo:.3f}..{hi:.3f}; "
                f"exact {self.exact} = {float(self.exact):.4f})")


def _window(alpha_range) -> tuple[float, float]:
    try:
        lo, hi = (float(a) for a in alpha_range)
    except (TypeError, ValueError):
        raise ValueError(f"alpha_range: expected two numbers (lo, hi), got {alpha_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"alpha_range: need 0 < lo < hi < inf, got ({lo}, {hi})")
    return lo, hi


def fit_exponent(model: HierarchicalModel, alpha_range, n_alphas: int = 41, estimator: str = "spectral",
                 **options) -> ExponentFit:
    r"""Fit MSE_gamma(alpha) ~ alpha^(-beta) on ``alpha_range`` = (lo, hi) from the d = infinity curve
    of ``estimator`` ("spectral": :func:`numerics.predict`; "bayes": the state evolution of
    docs/bayes.md, ``options`` passed on), on ``n_alphas`` geometric points.

    ``exact`` is :func:`theory.mse_exponent` for the spectral estimator and
    :func:`theory.bayes.bayes_mse_exponent` for the Bayes-optimal one. A window where the error is
    exactly 0 (noiseless perfect recovery) is refused: there is no exponent to read.
    """
    from theory import mse_exponent
    from theory.bayes import bayes_mse_exponent

    lo, hi = _window(alpha_range)
    if isinstance(n_alphas, bool) or not isinstance(n_alphas, (int, np.integer)) or n_alphas < 3:
        raise ValueError(f"n_alphas: need an integer >= 3, got {n_alphas!r}")
    if model.m == sp.oo and estimator == "bayes":
        raise ValueError("model.m: the Bayes-optimal state evolution needs a finite m (m = infinity: spectral only)")
    alphas = np.geomspace(lo, hi, int(n_alphas))
    if estimator == "spectral":
        from .predict import predict

        mse = predict(model, alphas, **options).mse
        exact = mse_exponent(model.gamma)
    elif estimator == "bayes":
        from .bayes import state_evolution

        mse = state_evolution(model, alphas, **options).mse
        exact = bayes_mse_exponent(model.gamma, noiseless=bool(model.delta == 0))
    else:
        raise ValueError(f"estimator: 'spectral' or 'bayes', got {estimator!r}")
    mse = np.asarray(mse, dtype=float)
    if np.any(mse <= 0):
        at = alphas[np.argmax(mse <= 0)]
        raise ValueError(f"alpha_range: the {estimator} MSE is 0 from alpha = {at:.4g} on (perfect recovery); "
                         "choose a window below it")
    x, y = np.log(alphas), np.log(mse)
    slope, c = np.polyfit(x, y, 1)
    local = np.gradient(y, x)
    resid = y - (c + slope * x)
    return ExponentFit(exponent=float(-slope), prefactor=float(np.exp(c)), exact=exact, window=(lo, hi),
                       local_slope_range=(float(local.min()), float(local.max())),
                       rms_residual=float(np.sqrt(np.mean(resid**2))), estimator=estimator, alphas=alphas, mse=mse)
