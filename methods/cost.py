"""--cost-weight: the expected multiply-adds of the supernet under its mixing weights, a
differentiable cost added to the alpha objective of any method with an alpha step (rsws refuses it).

    cost(a) = sum over alpha matrices m, edges e, ops k of p(a_m)_ek * C_m[e, k]
    alpha objective += lambda * cost(a) / M

C_m[e, k] is op k's multiply-adds per image at edge e, summed over the supernet cells that matrix
m weighs (the stage's channels and resolution, the reduction edges' stride, PC-DARTS's partial
channels, all read off the built supernet: every convolution and affine layer of the supernet is
charged to the edge and op of its parameter scope 'cell<c>/edge<i>_<j>/op<k>', the others to the
skeleton). M, the normaliser, is the cells' multiply-adds with the costliest op on every edge.
p(a) is the method's expected mixing weights (Method.mean_weights): softmax(a), the op
probabilities of DARTS and of GDAS's draws; DrNAS's Dirichlet mean.
This is the expected cost under the op probabilities softmax(a) of ProxylessNAS (Cai, Zhu & Han,
ICLR 2019: E[latency] = sum_k p_k F(o_k), here with multiply-adds as F), as FBNet (Wu et al., CVPR
2019) sums its per-op latency table under the mixing weights. Its gradient is lambda / M times
softmax(a)_ek (C[e, k] - sum_j softmax(a)_ej C[e, j]) on every edge. The derived cell's
multiply-adds are the skeleton's plus C[e, k] of each op the cell keeps: the network at the
search's size.
"""
import re

import numpy as np
import nnabla as nn
import nnabla.functions as F

from model_eval import function_multiply_adds

EDGE_OP = re.compile(r"(?:^|/)cell(\d+)/edge(\d+)_(\d+)/op(\d+)/")


def op_costs(graph, space, cells):
    """({alpha short name: (edges x ops) multiply-adds per image}, the skeleton's multiply-adds per
    image) of the search graph's supernet (model_search.search_graph) on ``space`` with ``cells``
    cells."""
    rows = {edge: e for e, edge in enumerate(space.edges)}
    costs = {name: np.zeros((len(space.edges), len(space.op_labels))) for name in space.alpha_names}
    skeleton, batch = [0], graph['x'].shape[0]
    # a graph reads unlinked copies of the parameters, named by their last scope alone: their arrays,
    # which are the parameters' own (equal and of equal hash), name them
    names = {p.data: name for name, p in nn.get_parameters(grad_only=False).items()}

    def visit(f):
        madds = function_multiply_adds(f)
        if not madds:
            return
        place = EDGE_OP.search(names.get(f.inputs[1].data, ''))
        if place is None:
            skeleton[0] += madds // batch
        else:
            cell, i, j, k = map(int, place.groups())
            costs[space.cell_alpha(cell, cells)][rows[(i, j)], k] += madds // batch
    graph['loss'].visit(visit)
    return costs, skeleton[0]


class CostPenalty:
    """lambda * cost(a) / M on the alphas of a built search graph (the module's text)."""

    def __init__(self, graph, space, cells, weight, mean_weights=None):
        self.costs, self.skeleton = op_costs(graph, space, cells)
        self.largest = sum(c.max(axis=1).sum() for c in self.costs.values())
        alphas = {name.split('/')[-1]: a for name, a in graph['alphas'].items()}
        mean_weights = mean_weights or (lambda a: F.softmax(a, axis=1))
        terms = [F.sum(F.mul2(mean_weights(alphas[name]), constant(cost))) for name, cost in self.costs.items()]
        self.expected = terms[0] if len(terms) == 1 else F.add_n(*terms)
        self.penalty = F.mul_scalar(self.expected, weight / self.largest)
        self.expected.persistent = True

    def add_gradient(self):
        """Accumulate the penalty's gradient into the alphas' .grad."""
        self.penalty.forward(clear_no_need_grad=True)
        self.penalty.backward(clear_buffer=True)

    def of(self, arch, space):
        """Multiply-adds per image of the search-sized network of ``arch``."""
        return self.skeleton + sum(self.costs[name][e, k] for name, ops in space.arch_ops(arch).items()
                                   for e, k in ops)

    def epoch_values(self, arch, space):
        self.expected.forward(clear_no_need_grad=True)  # of the current alphas, also in a warm-up
        return {'Multiply-adds of the derived cell': int(self.of(arch, space)),
                'Expected multiply-adds': int(self.skeleton + float(self.expected.d))}


def constant(array):
    """A Variable holding ``array``, outside any gradient."""
    v = nn.Variable.from_numpy_array(array.astype(np.float32))
    v.need_grad = False
    return v
