"""The statistics a claim is decided with: Student's t quantiles and 95% intervals for a difference
of means, paired by seed or unpaired (Welch). Used by report/claims.py; the rule: docs/tables.md,
"Claims".

The t distribution's CDF is the regularized incomplete beta function,

    P(T <= t) = 1 - I_x(df/2, 1/2) / 2  for t >= 0,   x = df / (df + t^2),

evaluated by its continued fraction (DLMF 8.17.22) with Lentz's method; a quantile is the t at
which the CDF meets p, found by bisection. Either loop raises ArithmeticError if it does not
converge. Degrees of freedom may be fractional (Welch's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LEVEL = 0.95  # the intervals' coverage
MAX_TERMS = 300  # of the continued fraction; it converges in far fewer for the df and x used here
MAX_HALVINGS = 200  # of the quantile's bracket
TINY = 1e-300  # Lentz's guard against a zero denominator
RELATIVE_TOLERANCE = 1e-14


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for 0 <= x <= 1 and a, b > 0."""
    if not (0.0 <= x <= 1.0 and a > 0 and b > 0):
        raise ValueError(f"regularized_beta needs 0 <= x <= 1 and a, b > 0; got x={x}, a={a}, b={b}")
    if x in (0.0, 1.0):
        return x
    # x^a (1-x)^b / (a B(a, b)) times the continued fraction; where x is past the mean the
    # fraction converges slowly, and I_x(a, b) = 1 - I_(1-x)(b, a) is used instead
    if x > (a + 1) / (a + b + 2):
        return 1.0 - regularized_beta(1.0 - x, b, a)
    log_front = a * math.log(x) + b * math.log1p(-x) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    return math.exp(log_front) / a * _beta_fraction(x, a, b)


def _beta_fraction(x: float, a: float, b: float) -> float:
    """1 / g with g = 1 + d1 / (1 + d2 / (1 + ...)), d_2m+1 = -(a+m)(a+b+m)x / ((a+2m)(a+2m+1)) and
    d_2m = m(b-m)x / ((a+2m-1)(a+2m)); g by Lentz's method (its convergents as products)."""
    value, upper, lower = 1.0, 1.0, 0.0  # g's convergent, and the ratios Lentz's method carries
    for term in range(1, MAX_TERMS + 1):
        m = term // 2
        if term % 2:
            coefficient = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            coefficient = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        lower = 1.0 + coefficient * lower
        lower = 1.0 / (lower if abs(lower) > TINY else TINY)
        upper = 1.0 + coefficient / upper
        upper = upper if abs(upper) > TINY else TINY
        step = upper * lower
        value *= step
        if abs(step - 1.0) < RELATIVE_TOLERANCE:
            return 1.0 / value
    raise ArithmeticError(f"the incomplete beta fraction did not converge in {MAX_TERMS} terms "
                          f"(x={x}, a={a}, b={b})")


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` > 0 degrees of freedom."""
    if df <= 0:
        raise ValueError(f"t_cdf needs df > 0; got {df}")
    tail = 0.5 * regularized_beta(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, for 0 < p < 1 and df > 0."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile needs 0 < p < 1; got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:  # the bracket [low, high] around the quantile
        low, high = high, 2.0 * high
        if high > 1e300:
            raise ArithmeticError(f"t_quantile({p}, {df}): no bracket found")
    for _ in range(MAX_HALVINGS):
        middle = 0.5 * (low + high)
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= RELATIVE_TOLERANCE * high:
            return 0.5 * (low + high)
    raise ArithmeticError(f"t_quantile({p}, {df}) did not converge in {MAX_HALVINGS} halvings")


@dataclass(frozen=True)
class Interval:
    """A difference of means (a - b) and its 95% interval."""
    diff: float
    low: float
    high: float
    n: int  # the seeds it rests on: the shared seeds when paired, else the smaller side's count
    paired: bool


def mean_std(values: list[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (n - 1; NaN for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def paired_interval(differences: list[float]) -> Interval:
    """The mean of per-seed differences a_s - b_s and its t interval (df = n - 1), n >= 2."""
    n = len(differences)
    mean, std = mean_std(differences)
    half = t_quantile(0.5 + LEVEL / 2, n - 1) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, paired=True)


def welch_interval(a: list[float], b: list[float]) -> Interval:
    """mean(a) - mean(b) with Welch's interval (df by Welch-Satterthwaite), both sides n >= 2.
    Both sides without spread: the interval is the difference itself."""
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    var_a, var_b = std_a ** 2 / len(a), std_b ** 2 / len(b)
    diff, n = mean_a - mean_b, min(len(a), len(b))
    if var_a + var_b == 0:
        return Interval(diff, diff, diff, n, paired=False)
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (len(a) - 1) + var_b ** 2 / (len(b) - 1))
    half = t_quantile(0.5 + LEVEL / 2, df) * math.sqrt(var_a + var_b)
    return Interval(diff, diff - half, diff + half, n, paired=False)


def difference_interval(a: list[tuple], b: list[tuple]) -> Interval | None:
    """a and b: (seed, value) pairs of each side. Paired over the shared seeds when at least two
    are shared and no side has a seed twice; otherwise Welch when each side has at least two
    values; otherwise None (no interval)."""
    by_seed_a, by_seed_b = dict(a), dict(b)
    shared = sorted(set(by_seed_a) & set(by_seed_b), key=str)
    if len(shared) >= 2 and len(by_seed_a) == len(a) and len(by_seed_b) == len(b):
        return paired_interval([by_seed_a[seed] - by_seed_b[seed] for seed in shared])
    if len(a) >= 2 and len(b) >= 2:
        return welch_interval([value for _, value in a], [value for _, value in b])
    return None
