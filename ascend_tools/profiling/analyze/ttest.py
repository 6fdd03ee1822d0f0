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
    if math.isnan(t):
        return 1.0
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    if dof > 1000:
        return 0.5 * math.erfc(t / math.sqrt(2.0))
    theta = math.atan(abs(t) / math.sqrt(dof))
    s, c = math.sin(theta), math.cos(theta)
    term, total = (c, c) if dof % 2 else (1.0, 1.0)
    for k in range(3 if dof % 2 else 2, dof - 1, 2):  # the series' next factor (k−1)/k cos²θ
        term *= (k - 1) / k * c * c
        total += term
    if dof % 2:
        a = 2.0 / math.pi * (theta + (s * total if dof > 1 else 0.0))
    else:
        a = s * total
    upper = max(0.0, (1.0 - a) / 2.0)
    return upper if t >= 0 else 1.0 - upper


def one_sided_p(values: np.ndarray) -> float:
    """P-value of "mean ≤ 0" against "mean > 0" (1.0 with fewer than two values)."""
    n = len(values)
    if n < 2:
        return 1.0
    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    if sd == 0.0:
        return 0.0 if mean > 0 else 1.0
    return t_tail(mean / (sd / math.sqrt(n)), n - 1)
