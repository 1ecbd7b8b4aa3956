"""The sympy symbols shared by every closed form (one home, so laws compose).

>>> from theory.symbols import alpha, kappa_T
>>> (alpha / kappa_T).free_symbols == {alpha, kappa_T}
True
"""
import sympy as sp

#: sample ratio n/d of Model S
alpha = sp.Symbol("alpha", positive=True)
#: number of samples (Model C)
n = sp.Symbol("n", positive=True)
#: E[T(Y)^2] / E[T'(Y)]^2, the preprocessing constant of docs/theory.md §2.3
kappa_T = sp.Symbol("kappa_T", positive=True)
#: a generic direction index
k = sp.Symbol("k", positive=True, integer=True)
#: power-law exponent, for symbolic laws
gamma = sp.Symbol("gamma", positive=True)

__all__ = ["alpha", "n", "kappa_T", "k", "gamma"]
