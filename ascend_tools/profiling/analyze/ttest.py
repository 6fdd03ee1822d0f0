"""One-sided one-sample Student t-test, without scipy (the core install stays light).

For values x_1..x_n: t = mean(x) / (sd(x) / √n), sd with n − 1 degrees of freedom; the p-value is
P(T_{n−1} ≥ t), from the closed forms of Abramowitz & Stegun 26.7.3–26.7.4 for an integer number of
degrees of freedom ν, with θ = atan(t / √ν) and A = P(|T| < t):

    ν odd:   A = (2/π) (θ + sin θ (cos θ + (2/3) cos³θ + … + (2·4…(ν−3))/(1·3…(ν−2)) cos^(ν−2) θ))
    ν even:  A = sin θ (1 + (1/2) cos²θ + … + (1·3…(ν−3))/(2·4…(ν−2)) cos^(ν−2) θ)

and P(T ≥ t) = (1 − A)/2 for t ≥ 0. Above 1,000 degrees of freedom the normal tail stands in.
"""

import math

import numpy as np


def t_tail(t: float, dof: int) -> float:
    """P(T ≥ t) for Student's t with ``dof`` ≥ 1 degrees of freedom."""
    return float(t_tails(np.array([t], dtype=np.float64), dof)[0])


def t_tails(t: np.ndarray, dof: int) -> np.ndarray:
    """:func:`t_tail` of every element of ``t``."""
    t = np.asarray(t, dtype=np.float64)
    if dof > 1000:
        out = np.array([0.5 * math.erfc(x / math.sqrt(2.0)) for x in t.tolist()])
        out[np.isnan(t)] = 1.0
        return out
    with np.errstate(invalid="ignore"):
        theta = np.arctan(np.abs(t) / math.sqrt(dof))
    s, c = np.sin(theta), np.cos(theta)
    term = c.copy() if dof % 2 else np.ones_like(c)
    total = term.copy()
    for k in range(3 if dof % 2 else 2, dof - 1, 2):  # the series' next factor (k−1)/k cos²θ
        term *= (k - 1) / k * c * c
        total += term
    if dof % 2:
        a = 2.0 / math.pi * (theta + (s * total if dof > 1 else 0.0))
    else:
        a = s * total
    upper = np.maximum(0.0, (1.0 - a) / 2.0)
    out = np.where(t >= 0, upper, 1.0 - upper)
    out[np.isnan(t)] = 1.0
    return out


def one_sided_p(values: np.ndarray) -> float:
    """P-value of "mean ≤ 0" against "mean > 0" (1.0 with fewer than two values)."""
    return float(one_sided_ps(np.asarray(values, dtype=np.float64)[None, :])[0])


def one_sided_ps(rows: np.ndarray) -> np.ndarray:
    """:func:`one_sided_p` of each row of a 2-D array."""
    m, n = rows.shape
    if n < 2:
        return np.ones(m)
    mean, sd = rows.mean(axis=1), rows.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(sd > 0, mean / (sd / math.sqrt(n)), np.where(mean > 0, np.inf, -np.inf))
    return t_tails(t, n - 1)
