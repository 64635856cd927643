"""Three ways to write the recurrent supernet cell, timed in the search step; and the cost of building
the unrolled graph. Prints one JSON line per form.

    python benchmarks/rnn_cell_forms.py [--size 300] [--batch-size 64] [--bptt 35] [--steps 2]

- ``batched`` (spaces/darts_rnn/cell.py): one matrix product per node for all its incoming edges,
  the weighted sums over the edges and ops as batched matrix products;
- ``per-edge``: one matrix product per edge (36 a time step), the ops' weighted sum by broadcasting
  multiplies, as the paper's formula reads;
- ``per-op``: one product per node, but each op's term weighted by a broadcasting multiply.

All three compute the same cell (checked here on the first step's loss); the step is
recurrent.search_setup's (first order), on random tokens of a 10,000-word vocabulary.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnabla as nn  # noqa: E402
import nnabla.functions as F  # noqa: E402

import corpora  # noqa: E402
import device  # noqa: E402
import recurrent  # noqa: E402
from args import SEARCH, parse  # noqa: E402
from spaces.darts_rnn import cell  # noqa: E402
from spaces.darts_rnn.arch import NODES, OPS  # noqa: E402
from spaces.darts_rnn.graph import carried  # noqa: E402

BATCHED = cell.search_step


def op_terms(before, c, h_, weights, row, node):
    """sum_k w_k (s + c (f_k(h') - s)) over the ops but none, each weighted by a broadcasting multiply."""
    terms = []
    for k, op in enumerate(OPS):
        if op == 'none':
            continue
        w = F.reshape(F.slice(weights, (row, k), (row + node, k + 1)), (node, 1, 1))
        terms.append(F.sum(F.mul2(w, F.add2(before, F.mul2(c, F.sub2(cell.ACTIVATIONS[op](h_), before)))), axis=0))
    return F.add_n(*terms)


def literal_step(x, h, weights, x_mask=None, h_mask=None, bn=True, test=False, per_edge=False):
    """The supernet cell as its formula reads: per node (or, ``per_edge``, per edge) a product, the
    ops weighted by broadcasting multiplies."""
    batch, hidden = h.shape
    xh = F.concatenate(cell.masked(x, x_mask), cell.masked(h, h_mask), axis=1)
    norm = (lambda s: nn.parametric_functions.batch_normalization(
        s, axes=[1], batch_stat=not test, no_scale=True, no_bias=True, name='bn')) if bn else (lambda s: s)
    states = [norm(cell.gated(h, F.affine(xh, cell.weight('W0', xh.shape[1], hidden)), F.tanh, hidden))]
    row = 0
    for node in range(1, NODES + 1):
        w_node = cell.weight('W{}'.format(node), hidden, hidden)
        if per_edge:
            terms = []
            for e, s in enumerate(states):
                ch = F.reshape(F.affine(cell.masked(s, h_mask), w_node), (1, batch, 2 * hidden))
                c = F.sigmoid(F.slice(ch, (0, 0, 0), (1, batch, hidden)))
                h_ = F.slice(ch, (0, 0, hidden), (1, batch, 2 * hidden))
                terms.append(op_terms(F.reshape(s, (1, batch, hidden)), c, h_, weights, row + e, 1))
            s = F.add_n(*terms)
        else:
            before = F.stack(*states, axis=0)
            flat = F.reshape(F.stack(*[cell.masked(s, h_mask) for s in states], axis=0), (node * batch, hidden))
            ch = F.reshape(F.affine(flat, w_node), (node, batch, 2 * hidden))
            c = F.sigmoid(F.slice(ch, (0, 0, 0), (node, batch, hidden)))
            s = op_terms(before, c, F.slice(ch, (0, 0, hidden), (node, batch, 2 * hidden)), weights, row, node)
        states.append(norm(s))
        row += node
    return F.mul_scalar(F.add_n(*states[1:]), 1.0 / NODES)


FORMS = {'batched': BATCHED, 'per-op': literal_step,
         'per-edge': lambda *a, **k: literal_step(*a, per_edge=True, **k)}


def measure(form, args, steps):
    nn.clear_parameters()
    nn.seed(0)
    cell.search_step = FORMS[form]
    started = time.perf_counter()
    _, _, _, step = recurrent.search_setup(args, corpora.PTB_WORDS)
    built = time.perf_counter() - started
    rng = np.random.RandomState(0)
    states = [carried(name, args.batch_size, args.hidden_size) for name in ('train', 'valid')]

    def window(state):
        return (rng.randint(0, corpora.PTB_WORDS, (args.bptt, args.batch_size)),
                rng.randint(0, corpora.PTB_WORDS, (args.bptt, args.batch_size)), state.d.copy(), state)
    first = step(window(states[0]), window(states[1]), 0)['Training loss']
    times = []
    for it in range(1, steps + 1):
        start = time.perf_counter()
        step(window(states[0]), window(states[1]), it)
        times.append(time.perf_counter() - start)
    calls = []
    nn.set_function_pre_hook('count', lambda f: calls.append(None))
    step(window(states[0]), window(states[1]), steps + 1)
    nn.unset_function_pre_hook('count')
    cell.search_step = BATCHED
    return dict(form=form, build_seconds=round(built, 3), sec_per_step=round(statistics.median(times), 3),
                functions_per_step=len(calls), first_loss=first)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=300)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--bptt', type=int, default=35)
    p.add_argument('--steps', type=int, default=2)
    own = p.parse_args()
    args = parse(SEARCH, ['-c', 'cpu', '--dataset', 'ptb', '--embedding-size', str(own.size), '--hidden-size',
                          str(own.size), '-b', str(own.batch_size), '--bptt', str(own.bptt)])
    nn.set_default_context(device.device_context('cpu', 0, 'float'))  # as the scripts set it up
    results = [measure(form, args, own.steps) for form in FORMS]
    for r in results:
        print(json.dumps(r), flush=True)
    losses = [r['first_loss'] for r in results]
    assert max(losses) - min(losses) < 1e-4 * abs(losses[0]), losses  # the same cell


if __name__ == '__main__':
    main()
