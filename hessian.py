"""The dominant eigenvalue of the Hessian of the validation loss with respect to the alphas.

Zela et al. (ICLR 2020, "Understanding and Robustifying Differentiable Architecture Search")
found that a DARTS search collapses onto parameter-free ops while this eigenvalue grows. It is
found here (the largest eigenvalue, as RobustDARTS reports it) by the Lanczos iteration on
Hessian-vector products, each a central finite difference of the alpha gradient (every alpha
of the supernet, the betas of edge normalisation included, as one vector):

    H v ~ (grad_a L_val(w, a + eps v) - grad_a L_val(w, a - eps v)) / (2 eps),  |v| = 1

on a fixed set of validation batches without augmentation, so that the numbers of two epochs
differ only by what the search changed. Lanczos rather than power iteration: the alpha Hessian
of a real search has negative eigenvalues almost as large as the largest one, and power
iteration's Rayleigh quotient then swings without settling (on docs/collapse.md's real search after 3
epochs it still moved between 0.15 and 0.23 after 40 products), where Lanczos, with the same
products, gives the largest eigenvalue (0.3528) to 4 digits in 9. The search itself is left
exactly as it was: the alphas, their gradients and the BN running statistics that these
forward passes touch are written back bit for bit, and the batches come from an iterator of
their own.
"""
import numpy as np

from model_search import forward_backward
from numerics import running_statistics

FD_STEP = 1e-2       # eps: the length of the alpha perturbation
MAX_ITERATIONS = 20  # Lanczos iterations (Hessian-vector products) at most
TOLERANCE = 1e-3     # stop when the eigenvalue estimate moves by less than this fraction of itself
START_SEED = 0       # the iteration always starts from the same random direction


def flat(arrays):
    return np.concatenate([a.ravel() for a in arrays]).astype(np.float64)


def write_alphas(alphas, vector):
    """Write the flat ``vector`` into the alphas' arrays, in place (the graph reads those arrays)."""
    start = 0
    for a in alphas.values():
        a.d = vector[start:start + a.size].reshape(a.shape)
        start += a.size


def alpha_gradient(graph, alphas, solver, batches):
    """grad_a of the mean validation loss over ``batches``, as one flat vector."""
    total = 0.0
    for batch in batches:
        forward_backward(graph, batch, {'alphas': solver})
        total = total + flat([a.g for a in alphas.values()])
    return total / len(batches)


def hessian_vector_product(graph, alphas, solver, batches, base, v, eps=FD_STEP):
    """H v by the central difference of the alpha gradient around ``base`` (v of norm 1)."""
    grads = []
    for sign in (1, -1):
        write_alphas(alphas, base + sign * eps * v)
        grads.append(alpha_gradient(graph, alphas, solver, batches))
    return (grads[0] - grads[1]) / (2 * eps)


def lanczos(hvp, size, iterations=MAX_ITERATIONS, tolerance=TOLERANCE):
    """(largest eigenvalue, iterations run) of the symmetric matrix behind ``hvp``, one product an
    iteration: the largest eigenvalue of the tridiagonal matrix that the Lanczos iteration builds
    on the Krylov basis from a fixed random start. The basis is kept orthonormal by projecting
    each new vector off all the previous ones, twice (the three-term recurrence alone loses
    orthogonality in floating point, and the products here carry finite-difference noise)."""
    q = np.random.RandomState(START_SEED).randn(size)
    basis, diagonal, off_diagonal = [q / np.linalg.norm(q)], [], []
    value = None
    for k in range(1, min(iterations, size) + 1):
        w = hvp(basis[-1])
        diagonal.append(float(basis[-1] @ w))
        Q = np.array(basis)
        for _ in range(2):
            w = w - Q.T @ (Q @ w)
        T = np.diag(diagonal) + np.diag(off_diagonal, 1) + np.diag(off_diagonal, -1)
        previous, value = value, float(np.linalg.eigvalsh(T)[-1])
        norm = float(np.linalg.norm(w))
        if norm <= 1e-12 * max(abs(value), 1.0) or (previous is not None
                                                    and abs(value - previous) <= tolerance * abs(value)):
            break  # an invariant subspace (the estimate is exact), or converged
        off_diagonal.append(norm)
        basis.append(w / norm)
    return value, k


def dominant_eigenvalue(graph, alphas, solver, batches, iterations=MAX_ITERATIONS, tolerance=TOLERANCE):
    """(largest eigenvalue of the alpha Hessian of the validation loss on ``batches``, Lanczos
    iterations run). The alphas, their gradients and the BN running statistics are restored."""
    saved = {k: (a.d.copy(), a.g.copy()) for k, a in alphas.items()}
    stats = [(p, p.d.copy()) for p in running_statistics().values()]
    base = flat([d for d, _ in saved.values()])
    try:
        return lanczos(lambda v: hessian_vector_product(graph, alphas, solver, batches, base, v),
                       base.size, iterations, tolerance)
    finally:
        for k, a in alphas.items():
            a.d, a.g = saved[k]
        for p, d in stats:
            p.d = d
