r"""The true Model C layer 1 for q = 2, exactly, from Wick's theorem (docs/theory.md §3).

For q = 2, :math:`Z(x) \in R^D` (D = d(d+1)/2) holds :math:`x_ix_j` (i < j) and
:math:`(x_i^2-1)/\sqrt2`. A vector :math:`a\in R^D` is the symmetric d x d matrix M with
:math:`M_{ii} = a_{ii}/\sqrt2`, :math:`M_{ij} = a_{ij}/2` (:func:`vec_to_sym`); then
:math:`\langle Z(x), a\rangle = x^\top Mx - \mathrm{tr}M = \langle \tilde X, M\rangle` with
:math:`\tilde X = xx^\top - I`, and :math:`\langle a, a'\rangle = 2\langle M, M'\rangle_F`.

**Wick's theorem for two quadratic forms.** For symmetric M, M',

.. math:: \tilde X_M\tilde X_{M'} = {:}\tilde X_M\tilde X_{M'}{:}_4
          + 4\,{:}x^\top \mathrm{sym}(MM')x{:} + 2\,\mathrm{tr}(MM'),

a degree-4 Wick product, a degree-2 one (:math:`{:}x^\top Nx{:} = x^\top Nx - \mathrm{tr}N`)
and a constant. In the Gaussian-equivalent model :math:`ZZ^\top - I` *is* the degree-2 Hermite
tensor of Z; in the true model it also carries the degree-2 chaos of x. Hence, for
:math:`y = \sum_i c_i He_2(h_i)`, :math:`h_i = \langle \tilde X, S_i\rangle` (:math:`S_i` the
matrix of :math:`A_i`, :math:`2\|S_i\|_F^2 = 1`), the population layer-1 operator
:math:`P = \frac12 E[y(ZZ^\top - I)]` acts on M as

.. math:: P a \leftrightarrow \sum_i c_i\Big(\underbrace{2\langle S_i, M\rangle S_i}_{A_iA_i^\top a}
          + \underbrace{4 S_iMS_i}_{\text{4th chaos, extra pairings}}\Big)
          + \underbrace{\tfrac12(C_2M + MC_2)}_{\text{2nd chaos}},
          \qquad C_2 = E[y(xx^\top - I)] = 8\sum_i c_iS_i^2

(the 24 pairings of :math:`{:}h_i^2{:}_4` with :math:`{:}\tilde X_M\tilde X_{M'}{:}_4`: 8 pair the
two pairs, 16 split them). Both extra terms are full rank. Their sizes follow from the
semicircle of :math:`S_i` (radius :math:`\sqrt{2/d}`): :math:`\|4c S_i\otimes S_i\| \approx 8c/d`
and :math:`\|C_2\otimes I\| \approx 16c/d`, together the ~24 theta/d spurious spectrum that docs/theory.md §3
warns of. The 2nd-chaos part is known from the data: :math:`\hat C_2 = \frac1n\sum_\mu y_\mu
(x_\mu x_\mu^\top - I)` (d x d, n >> d^2), so the **Wick-ordered estimator**

.. math:: M_1^{\rm wick} = \frac1{2n}\sum_\mu y_\mu (Z_\mu Z_\mu^\top - I) - \tfrac12(\hat C_2\,\cdot + \cdot\,\hat C_2)
          = \frac1{2n}\sum_\mu y_\mu\,{:}Z_\mu Z_\mu^\top{:}_4

(each sample's 4th-chaos projection) removes it exactly; the :math:`S_i\otimes S_i` part is
intrinsic to the fully symmetric 4th Hermite tensor of y and stays.

Examples
--------
>>> import numpy as np
>>> a = np.arange(6.0).reshape(6, 1)             # d = 3, D = 6
>>> M = vec_to_sym(a, 3)[0]
>>> bool(np.allclose(sym_to_vec(M[None]), a)), bool(np.allclose(M, M.T))
(True, True)

One feature with c = 0.5 at d = 30: the spike (0.5 + 8c tr S^4), then the top of the spurious
spectrum, about 24c/d = 0.4 in all and 8c/d = 0.13 once Wick-ordered (finite-d semicircles sit lower):

>>> d = 30; A = np.linalg.qr(np.random.default_rng(0).standard_normal((d * (d + 1) // 2, 1)))[0]
>>> ev = lambda P: np.sort(np.linalg.eigvalsh(P))[::-1]
>>> ev(population_layer1(A, [0.5], d))[:2].round(2), ev(population_layer1(A, [0.5], d, wick=True))[:2].round(2)
(array([0.72, 0.32]), array([0.57, 0.11]))
"""
from __future__ import annotations

import numpy as np

from theory.model import finite_array

__all__ = ["vec_to_sym", "sym_to_vec", "lift", "second_chaos", "second_chaos_matrix", "second_chaos_share",
           "population_layer1"]


def _pairs(d):
    iu = np.triu_indices(d)  # row-major (i <= j): the combinations_with_replacement order of Z(x)
    return iu[0], iu[1]


def vec_to_sym(a: np.ndarray, d: int) -> np.ndarray:
    """Columns of a (D x k) -> k symmetric matrices (k x d x d) with <Z(x), a> = x^T M x - tr M."""
    a = np.asarray(a, dtype=float)
    a = a.reshape(a.shape[0], -1)
    if a.shape[0] != d * (d + 1) // 2:
        raise ValueError(f"a: expected D = d(d+1)/2 = {d * (d + 1) // 2} rows for d = {d}, got {a.shape[0]}")
    I, J = _pairs(d)
    M = np.zeros((a.shape[1], d, d))
    diag = I == J
    M[:, I[diag], J[diag]] = a[diag].T / np.sqrt(2)
    M[:, I[~diag], J[~diag]] = a[~diag].T / 2
    M[:, J[~diag], I[~diag]] = a[~diag].T / 2
    return M


def sym_to_vec(M: np.ndarray) -> np.ndarray:
    """Inverse of :func:`vec_to_sym`: (k x d x d) -> (D x k)."""
    d = M.shape[-1]
    I, J = _pairs(d)
    diag = I == J
    return np.where(diag[:, None], np.sqrt(2) * M[:, I, J].T, 2 * M[:, I, J].T)


def lift(op, d: int, batch: int = 256) -> np.ndarray:
    """The D x D matrix of a linear map on symmetric d x d matrices (``op``: k x d x d -> k x d x d)."""
    D = d * (d + 1) // 2
    E = np.eye(D)
    out = np.empty((D, D))
    for s in range(0, D, batch):
        out[:, s: s + batch] = sym_to_vec(op(vec_to_sym(E[:, s: s + batch], d)))
    return out


def second_chaos(C2: np.ndarray) -> np.ndarray:
    r"""The D x D matrix of :math:`M \mapsto \frac12(C_2M + MC_2)`: the degree-2 chaos part
    of :math:`\frac12 E[y(ZZ^\top - I)]` when :math:`C_2 = E[y(xx^\top - I)]`."""
    C2 = np.asarray(C2, dtype=float)
    return 0.5 * lift(lambda Ms: C2 @ Ms + Ms @ C2, C2.shape[0])


def _checked(A, c, d):
    A = finite_array(A, "A")
    c = finite_array(c, "c").ravel()
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d: the dimension must be an integer >= 1, got {d!r}")
    if A.ndim != 2 or A.shape[0] != d * (d + 1) // 2 or A.shape[1] != c.size:
        raise ValueError(f"A: expected shape (D = {d * (d + 1) // 2}, len(c) = {c.size}), got {A.shape}")
    return A, c


def second_chaos_matrix(A: np.ndarray, c, d: int) -> np.ndarray:
    r""":math:`C_2 = E[y(xx^\top - I)] = 8\sum_i c_iS_i^2` (d x d) for
    :math:`y = \sum_i c_i He_2(\langle A_i, Z(x)\rangle)`: the degree-2 chaos of y in x (module
    docstring; :math:`S_i` the matrix of :math:`A_i`, :func:`vec_to_sym`).

    >>> import numpy as np
    >>> A = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 1)))[0]   # d = 3
    >>> C2 = second_chaos_matrix(A, [1.0], 3)
    >>> bool(np.allclose(C2, 8 * vec_to_sym(A, 3)[0] @ vec_to_sym(A, 3)[0]))
    True
    """
    A, c = _checked(A, c, d)
    S = vec_to_sym(A, d)
    return 8 * np.einsum("i,ijk,ikl->jl", c, S, S)


def second_chaos_share(A: np.ndarray, c, d: int) -> float:
    r"""The variance of y's degree-2 chaos in x, :math:`f_2 = \tfrac12\|C_2\|_F^2`
    (:func:`second_chaos_matrix`; docs/figures/separation.md, "The kernels' floor").

    The projection of y on the degree-2 chaos is :math:`x^\top Nx - \mathrm{tr}N` with
    :math:`E[y(xx^\top - I)] = 2N`, so :math:`N = C_2/2` and its variance is
    :math:`2\|N\|_F^2 = \|C_2\|_F^2/2`. For a standardised y (Var y = 1, c_i = b_i / sd) it is
    the share of the target that a kernel method on x fits with d^2 << n << d^4 samples (y is even
    in x and has mean 0, so only the degree-2 part is within reach there).

    One feature, d = 3, y = He2(h) not standardised (f2 = 4.87 of its variance), checked by Monte Carlo
    (2^20 draws; over 32 such estimates their sd is 0.072, so 5 % is 3.4 sd):

    >>> import numpy as np
    >>> A = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 1)))[0]
    >>> f2 = second_chaos_share(A, [1.0], 3)
    >>> x = np.random.default_rng(2).standard_normal((2**20, 3))
    >>> h = np.einsum("ni,ij,nj->n", x, vec_to_sym(A, 3)[0], x) - np.trace(vec_to_sym(A, 3)[0])
    >>> y = h**2 - 1                                                  # He2(h), c = 1
    >>> C2 = (x * y[:, None]).T @ x / len(y) - y.mean() * np.eye(3)
    >>> bool(abs(0.5 * np.sum(C2 * C2) - f2) < 0.05 * f2)
    True
    """
    C2 = second_chaos_matrix(A, c, d)
    return 0.5 * float(np.sum(C2 * C2))


def population_layer1(A: np.ndarray, c, d: int, wick: bool = False) -> np.ndarray:
    r"""The exact population layer-1 operator of the true model (q = 2), D x D.

    :math:`P = \frac12 E[y(Z Z^\top - I)]` for :math:`y = \sum_i c_i He_2(\langle A_i, Z(x)\rangle)`
    (plus any constant), with orthonormal columns :math:`A_i` of A (D x d1); with ``wick``
    the degree-2 chaos term is left out (the population of the Wick-ordered estimator). In the
    Gaussian-equivalent model the same operator is :math:`\sum_i c_iA_iA_i^\top`.
    """
    A, c = _checked(A, c, d)
    S = vec_to_sym(A, d)
    P = (A * c) @ A.T
    P += lift(lambda Ms: 4 * sum(ci * (Si @ Ms @ Si) for ci, Si in zip(c, S)), d)
    if not wick:
        P += second_chaos(second_chaos_matrix(A, c, d))
    return P
