"""What every supernet shares, and the search graph built on a space's supernet.

Every edge i->j of a supernet cell is a mixed op: sum_k softmax(alpha_ij)_k * op_k(x_i) over the
ops of the space's op table (operations.OpTable). The zero op takes part in the softmax, but its
output (zeros) is never computed. The alphas (and betas) are the parameters of scope 'alpha',
their short names starting with 'alpha_' (and 'beta_').

Two options of PC-DARTS (Xu et al., ICLR 2020), both off by default (the plain DARTS graph):
partial channels K, where only the first C/K channels of an edge's input go through its mixed op
(ops of C/K channels) and the others bypass it (through a 2x2 max pooling of stride 2 on a
reduction edge), the two parts concatenated and the channels shuffled with K groups; and edge
normalisation, where each node weighs its incoming edges by a softmax over their betas.

The search graph is built once: the supernet's loss and error on one input pair, fed
alternately with both data halves; every pass over it goes through ``forward_backward``.
"""
import functools
import itertools

import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I

import parallel
from numerics import running_statistics
from operations import NodeOutput, scale
from tasks.classification import inputs, mean_loss_and_error

ALPHA_SCOPE = 'alpha'
ALPHA_PREFIXES = ('alpha_', 'beta_')


def dag_edges(first, last):
    """(input, node) of every edge of a cell whose nodes ``first``..``last`` each read every earlier
    node, in the alphas' row order: node by node, inputs in order."""
    return [(i, j) for j in range(first, last + 1) for i in range(j)]


def incoming(edge_list, j):
    """The rows (edge indices) of the edges into node ``j``."""
    return [e for e, (_, node) in enumerate(edge_list) if node == j]


def alphas(names, rows, ops):
    """The (rows x ops) alpha Parameters ``names`` (or, with ops=1, the (rows x 1) betas of edge
    normalisation), created as 1e-3 * N(0, 1) on first call."""
    with nn.parameter_scope(ALPHA_SCOPE):
        return [nn.parameter.get_parameter_or_create(name, (rows, ops), I.NormalInitializer(1e-3)) for name in names]


def is_alpha(name):
    """Whether the parameter ``name`` is an alpha (or beta): its full name ('alpha/alpha_normal') or
    the name of the graph's own Variable of it ('alpha_normal')."""
    return name.split('/')[-1].startswith(ALPHA_PREFIXES)


def split_parameters(params):
    """(weights, alphas): the parameter dict split for the two solvers."""
    return ({k: v for k, v in params.items() if not is_alpha(k)}, {k: v for k, v in params.items() if is_alpha(k)})


def op_weights(alpha, table):
    """softmax(alpha) as one (1, 1) Variable per edge and op (None for the zero op, which is never
    computed): built once, used by every cell."""
    return edge_slices(F.softmax(alpha, axis=1), table)


def edge_slices(w, table):
    """The (edges x ops) mixing weights ``w`` as one (1, 1) Variable per edge and op (None for the
    zero op of ``table``)."""
    return [[None if k == table.zero else F.slice(w, (e, k), (e + 1, k + 1)) for k in range(len(table.names))]
            for e in range(w.shape[0])]


ALONE = 'alone'  # the weight of an op computed unweighted (a sampled architecture's op)


class Drawn(list):
    """An edge's mixing weights, one per op (None: the op is not computed), with ``added``, the (1, 1)
    weights that are added to the edge's output as scalars: GDAS's ops not drawn, of value 0, whose
    gradient is then the sum of the output's (methods/gdas.py)."""

    def __init__(self, weights, added=()):
        super().__init__(weights)
        self.added = list(added)


def mixed_op(x, weights, C, stride, bn, table):
    """sum_k w_k op_k(x) over the ops of ``table`` whose weight is not None (softmax mixing: all but
    the zero op, whose w_zero * 0 adds nothing), plus the scalars of a Drawn's ``added``; None if
    nothing is computed. Each w_k is the gamma of the BN that ends op k (a pool gets its BN here
    where the table says so, else is scaled, as the plain identity is); an op of weight ALONE is
    computed unweighted, and a zero op with a weight gives weighted zeros."""
    # w_k * BN(h) = BN(h) with gamma w_k: the same sum without a multiply per op; the plain sum,
    # sum_k w_k op_k(x), is tests/test_search.py's plain_mixed_op (test_fast_paths.py checks both agree)
    added = getattr(weights, 'added', ())
    shift = functools.reduce(F.add2, added) if added else None  # the first computed op's output gets it
    terms = []
    for k, (op, w) in enumerate(zip(table.functions, weights)):
        if w is None:
            continue
        weighted = (lambda h: h) if w is ALONE else functools.partial(scale, s=w)
        out_bn = bn if w is ALONE else functools.partial(bn, gamma=w, beta=shift)
        with nn.parameter_scope('op{}'.format(k)):
            if (k == table.identity and stride == 1) or k == table.zero or (k in table.pools and not table.pool_bn):
                terms.append(shifted(weighted(op(x, C, stride, bn)), shift))
            elif k in table.pools:
                terms.append(out_bn(op(x, C, stride, bn)))
            else:
                terms.append(op(x, C, stride, bn, out_bn=out_bn))
        shift = None
    return functools.reduce(F.add2, terms) if terms else None


def shifted(h, shift):
    """h + shift for a (1, 1) Variable ``shift`` (None: h), broadcast first: nnabla's broadcasting
    add is twice as slow."""
    return h if shift is None else F.add2(h, F.broadcast(F.reshape(shift, (1, 1, 1, 1)), h.shape))


def node_sum(hs, like):
    """The sum of the edge outputs ``hs`` that were computed (not None): a node's output; zeros of
    ``like``'s shape where none was (a sampled architecture whose edges into a node are all zero; None
    where every node keeps an edge)."""
    hs = [h for h in hs if h is not None]
    return functools.reduce(F.add2, hs) if hs else F.mul_scalar(like, 0.0)  # a chain of add2 beats add_n on the CPU


def channel_shuffle(h, groups):
    """Interleave the channels of ``groups`` equal groups: (B, g, C/g, H, W) -> (B, C/g, g, H, W)."""
    b, c, height, width = h.shape
    h = F.reshape(h, (b, groups, c // groups, height, width))
    return F.reshape(F.transpose(h, (0, 2, 1, 3, 4)), (b, c, height, width))


def partial_input(x, k):
    """The NodeOutput of the first C/k channels of ``x`` (its ReLU a slice of x's shared one)."""
    c = x.h.shape[1] // k
    part = NodeOutput(F.slice(x.h, stop=(x.h.shape[0], c) + x.h.shape[2:]))
    part.relu = F.slice(x.relu, stop=(x.h.shape[0], c) + x.h.shape[2:])
    return part


def partial_mixed_op(x, part, weights, C, stride, bn, k, table):
    """PC-DARTS's edge: the mixed op on ``part`` (the first C/k channels of ``x``), the other
    channels bypassing it, concatenated and shuffled with k groups."""
    h = mixed_op(part, weights, C // k, stride, bn, table)
    rest = F.slice(x.h, start=(0, part.h.shape[1], 0, 0))
    if stride == 2:
        rest = F.max_pooling(rest, (2, 2), (2, 2))
    return channel_shuffle(F.concatenate(h, rest, axis=1), k)


def edge_weights(beta, edge_list):
    """Edge normalisation: per node, softmax over the betas of its incoming edges (consecutive rows),
    as one (1, 1) Variable per edge."""
    weights = []
    for j in sorted({node for _, node in edge_list}):
        rows = incoming(edge_list, j)
        w = F.softmax(F.slice(beta, (rows[0], 0), (rows[-1] + 1, 1)), axis=0)
        weights += [F.slice(w, (r, 0), (r + 1, 1)) for r in range(len(rows))]
    return weights


class Edges:
    """The mixed-op edges of one supernet cell: ``__call__(states, e, i, stride, C, bn)`` is edge
    ``e``'s output from node ``i`` (NodeOutput ``states[i]``), in scope 'edge<i>_<j>', weighed by
    its normalised beta with edge normalisation; with partial channels k > 1, the first C/k
    channels of a node are sliced once for all the edges that leave it."""

    def __init__(self, weights, table, k=1, betas=None):
        self.weights, self.table, self.k, self.betas, self.parts = weights, table, k, betas, {}

    def __call__(self, states, e, i, j, stride, C, bn):
        with nn.parameter_scope('edge{}_{}'.format(i, j)):
            if self.k == 1:
                h = mixed_op(states[i], self.weights[e], C, stride, bn, self.table)
            else:
                if i not in self.parts:
                    self.parts[i] = partial_input(states[i], self.k)
                h = partial_mixed_op(states[i], self.parts[i], self.weights[e], C, stride, bn, self.k, self.table)
        return h if self.betas is None or h is None else scale(h, self.betas[e])


def search_graph(space, net, batch_size):
    """The supernet of ``space`` for ``net`` (a spaces.space.Net), built once: its loss and error on
    one input pair, fed alternately with both data halves; the parameter dicts 'weights' and
    'alphas' (betas included) for the two solvers; the graph's own Variables of both ('leaves');
    under mpirun their gradient reducers ('reduce'; the weights' with BN's running statistics); 'space';
    and 'with_mixing', which builds the same graph on other mixing weights (a sampled architecture's)."""
    x, y = inputs(batch_size, net.data)
    graph = dict(x=x, y=y, space=space)
    graph['loss'], graph['err'] = mean_loss_and_error(space.supernet(x, net), y)
    graph['loss'].persistent = graph['err'].persistent = True
    graph['leaves'] = graph_parameters(graph['loss'])
    graph['weights'], graph['alphas'] = split_parameters(nn.get_parameters(grad_only=True))
    graph['reduce'] = {'weights': parallel.grad_reducer(graph['weights'], running_statistics()),
                       'alphas': parallel.grad_reducer(graph['alphas'])}
    graph['with_mixing'] = lambda mixing: search_graph(space, net._replace(mixing=mixing), batch_size)
    return graph


def graph_parameters(output):
    """{'weights': [...], 'alphas': [...]}: the Variables through which ``output`` reads the
    parameters. nnabla builds graphs on unlinked copies of the parameters, so the need_grad of
    these copies, not of nn.get_parameters()'s Variables, decides which gradients a backward
    computes."""
    leaves = {'weights': [], 'alphas': []}

    def visit(f):
        for v in f.inputs:
            if v.parent is None and v.need_grad:
                leaves['alphas' if is_alpha(v.name) else 'weights'].append(v)
    output.visit(visit)
    return leaves


def forward_backward(graph, batch, solvers):
    """Loss and error of ``batch``, with fresh gradients of the parameters of ``solvers`` (a dict
    with 'weights', 'alphas' or both) and no work spent on the gradients of the others; under
    mpirun the gradients are then averaged over the ranks, so that the second-order step's
    unrolled weights, direction, its norm and hypergradient agree on all ranks. A graph with a 'feed'
    (the language model's, spaces/darts_rnn/graph.py) is fed by it, and its 'carry' keeps the state
    the pass ends in."""
    if 'feed' in graph:
        graph['feed'](batch)
    else:
        graph['x'].d, graph['y'].d = batch
    for group, leaves in graph['leaves'].items():
        for v in leaves:
            v.need_grad = group in solvers
    try:
        nn.forward_all([graph['loss'], graph['err']], clear_no_need_grad=True)
        if 'carry' in graph:
            graph['carry'](batch)
        for solver in solvers.values():
            solver.zero_grad()
        graph['loss'].backward(clear_buffer=True)
        for group in solvers:
            if graph['reduce'][group]:
                graph['reduce'][group]()
    finally:
        for v in itertools.chain(*graph['leaves'].values()):
            v.need_grad = True
    return float(graph['loss'].d), float(graph['err'].d)
