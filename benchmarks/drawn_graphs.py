"""What computing a drawn network alone costs in nnabla (GDAS, RSWS): a static graph computes every
op it holds, so each pass builds the graph of its drawn network. This times, per pass, the static
graph's build and its forward-backward, against nnabla's dynamic mode (nn.auto_forward), which
computes while it builds; and the full supernet's forward-backward, which a static DARTS step reuses.

    python benchmarks/drawn_graphs.py [--passes 8]

Sizes: NAS-Bench-201 C=8, N=1, batch 64, and the DARTS space with 5 cells of C=8, batch 32 (the
sizes of benchmarks/methods.py). Prints one JSON line per space (median seconds per pass).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnabla as nn  # noqa: E402
import nnabla.solvers as S  # noqa: E402

import methods  # noqa: E402
import spaces  # noqa: E402
from device import device_context  # noqa: E402
from methods.gdas import WEIGHT_PASS, DrawnGraph  # noqa: E402
from model_search import forward_backward, search_graph  # noqa: E402
from spaces.space import Net  # noqa: E402
from tasks.classification import CIFAR10, mean_loss_and_error  # noqa: E402

SIZES = {'nas-bench-201': (8, 1, 64), 'darts': (8, 5, 32)}


class Dynamic(DrawnGraph):
    """A DrawnGraph whose noise is set before it is built, for nnabla's dynamic mode."""

    def __init__(self, drawn, gumbels, tau):
        self.drawn, self.inputs, self.gumbels = drawn, {}, gumbels
        self.tau = nn.Variable.from_numpy_array(np.full((1, 1), tau, np.float32))

    def noise(self, alpha):
        one_hot = np.zeros(alpha.shape, np.float32)
        one_hot[np.arange(alpha.shape[0]), self.drawn[alpha.name]] = 1
        return (nn.Variable.from_numpy_array(self.gumbels[alpha.name].astype(np.float32)),
                nn.Variable.from_numpy_array(one_hot))


def timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def measure(name, passes):
    """{what: median seconds per pass} on space ``name``."""
    nn.clear_parameters()
    space, (channels, cells, batch_size) = spaces.get(name), SIZES[name]
    method = methods.get('gdas', seed=0)
    net = Net(channels, cells, CIFAR10, mixing=method.mixing)
    graph = search_graph(space, net, batch_size)
    solvers = {'weights': S.Momentum(0.025, 0.9), 'alphas': S.Adam(3e-4)}
    for group, solver in solvers.items():
        solver.set_parameters(graph[group])
    method.attach(graph, solvers)
    method.schedule(0, 50)
    rng = np.random.RandomState(0)
    batch = (rng.randn(batch_size, 3, 32, 32).astype(np.float32), rng.randint(0, 10, (batch_size, 1)))
    weights = {'weights': solvers['weights']}
    times = {'static build': [], 'static forward-backward': [], 'dynamic build, forward, backward': [],
             'supernet forward-backward': []}
    for it in range(passes):
        method.graphs.clear()
        drawn_graph = []
        times['static build'].append(timed(lambda: drawn_graph.append(method.drawn_graph(it, WEIGHT_PASS))))
        times['static forward-backward'].append(timed(lambda: forward_backward(drawn_graph[0], batch, weights)))
        times['dynamic build, forward, backward'].append(timed(lambda: dynamic_pass(method, space, net, batch, it)))
        times['supernet forward-backward'].append(timed(lambda: forward_backward(graph, batch, weights)))
    return {what: round(float(np.median(t[1:])), 4) for what, t in times.items()}


def dynamic_pass(method, space, net, batch, iteration):
    """One weight pass of the drawn network in nnabla's dynamic mode."""
    gumbels, drawn = method.draw(iteration, WEIGHT_PASS)
    dynamic = Dynamic(drawn, gumbels, method.tau)
    with nn.auto_forward():
        x, y = (nn.Variable.from_numpy_array(a) for a in batch)
        loss, _ = mean_loss_and_error(space.supernet(x, net._replace(mixing=dynamic.mixing)), y)
    method.solvers['weights'].zero_grad()
    loss.backward(clear_buffer=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--passes', type=int, default=8, help='passes timed (the first one is not counted)')
    args = parser.parse_args()
    nn.set_default_context(device_context('cpu', 0, 'float'))  # as the scripts set it up
    for name in SIZES:
        print(json.dumps(dict(space=name, **measure(name, args.passes))))


if __name__ == '__main__':
    main()
