"""Gamma(a, 1) draws and their pathwise derivative in the shape a, in numpy (float64), for DrNAS's
Dirichlet mixing weights (methods/drnas.py): nnabla has no Gamma sampler with a gradient.

The derivative is the implicit reparameterisation of Figurnov, Mohamed & Mnih (NeurIPS 2018):
a draw z of CDF F(z; a) = u moves with a as dz/da = -(dF/da)(z; a) / p(z; a), p the density.
F is the regularised lower incomplete gamma function P(a, z), summed here as its series where
z < a + 1 and as the continued fraction of Q = 1 - P elsewhere (each where it converges
fast); dF/da is a central difference in a of log P (or log Q), whose relative step keeps a - h
positive. Everything is in logs, so that the tiny draws of a small a neither underflow nor
divide by zero.
"""
import math

import numpy as np

EPS = 1e-15       # a series or continued fraction stops when its next term or factor moves it by less
MAX_TERMS = 100000
STEP = 1e-5       # h = STEP * a, the central difference's step in a


def lgamma(a):
    """log Gamma(a), elementwise."""
    return np.array([math.lgamma(x) for x in np.ravel(a)]).reshape(np.shape(a))


def log_series(a, z, log_z):
    """log P(a, z) = a log z - z - log Gamma(a + 1) + log sum_n z^n / ((a + 1) ... (a + n))."""
    term, total = np.ones_like(z), np.ones_like(z)
    for n in range(1, MAX_TERMS):
        term = term * z / (a + n)
        total = total + term
        if np.all(term <= EPS * total):
            break
    return a * log_z - z - lgamma(a + 1) + np.log(total)


def log_fraction(a, z, log_z):
    """log Q(a, z) by its continued fraction (modified Lentz), which converges fast for z >= a + 1."""
    b = z + 1 - a
    c, d = np.full_like(z, 1e300), 1 / b
    h = d
    for i in range(1, MAX_TERMS):
        an = -i * (i - a)
        b = b + 2
        d, c = 1 / (an * d + b), b + an / c
        h = h * d * c
        if np.all(np.abs(d * c - 1) <= EPS):
            break
    return a * log_z - z - lgamma(a) + np.log(h)


def log_tail(a, z, log_z, lower):
    """log P(a, z) where ``lower``, log Q(a, z) elsewhere (arrays of one shape)."""
    out = np.empty_like(z)
    out[lower] = log_series(a[lower], z[lower], log_z[lower])
    out[~lower] = log_fraction(a[~lower], z[~lower], log_z[~lower])
    return out


def cdf(a, z):
    """P(a, z), the CDF of Gamma(a, 1) at z > 0."""
    a, z = np.broadcast_arrays(np.asarray(a, float), np.asarray(z, float))
    lower = z < a + 1
    tail = np.exp(log_tail(a, z, np.log(z), lower))
    return np.where(lower, tail, 1 - tail)


def log_rate(a, log_z):
    """d log z / da of Gamma(a, 1) draws z = exp(log_z): -(dP/da)(z; a) / (z p(z; a)), where
    dP/da = P d log P / da below a + 1 and -Q d log Q / da above."""
    a, log_z = np.broadcast_arrays(np.asarray(a, float), np.asarray(log_z, float))
    z, h = np.exp(log_z), STEP * a
    lower = z < a + 1
    slope = (log_tail(a + h, z, log_z, lower) - log_tail(a - h, z, log_z, lower)) / (2 * h)
    tail_over_density = np.exp(log_tail(a, z, log_z, lower) - (a * log_z - z - lgamma(a)))  # P or Q over z p
    return np.where(lower, -slope, slope) * tail_over_density


def rate(a, z):
    """dz/da of Gamma(a, 1) draws ``z`` (the implicit reparameterisation)."""
    return z * log_rate(a, np.log(z))


def log_draw(rng, a):
    """log z of Gamma(a, 1) draws of numpy RandomState ``rng``, one per entry of ``a``, drawn as
    Gamma(a + 1) * U^(1/a) (which has the law of Gamma(a), and whose log is finite for any a > 0)."""
    a = np.asarray(a, float)
    return np.log(rng.gamma(a + 1)) + np.log(1 - rng.random_sample(a.shape)) / a
