"""NAS-Bench-201 (Dong & Yang, ICLR 2020; NATS-Bench's topology space, TPAMI 2021): a cell of 4
nodes and 6 edges with 5 candidate ops, 15,625 cells in all, every one trained on CIFAR-10,
CIFAR-100 and ImageNet16-120, so that the table (table.py) gives the true accuracy of the cell a
search finds. The arch is NAS-Bench-201's cell string (arch.py) in a JSON file with its index:

    {"search_space": "nas-bench-201", "arch": "|nor_conv_3x3~0|+|...|", "index": 1462}
"""
import json

import numpy as np

from errors import UserError
from spaces.nas_bench_201 import arch as cell_string
from spaces.nas_bench_201 import network
from spaces.nas_bench_201.table import DATASETS, EMBEDDED, read
from spaces.space import Diagram, Space, normalised_betas, softmax_weights

NAME = 'nas-bench-201'
KEYS = ('search_space', 'arch', 'index')
TABLE_SERIES = tuple('Table accuracy {}'.format(d) for d in DATASETS)
PARAMETER_FREE_SERIES = 'Parameter-free ops'
SHAPE = dict(epoch=200, batch_size=256, model_lr=0.1, min_model_lr=0.0)  # NAS-Bench-201's 200-epoch recipe
BOTH = dict(num_cells=5, output_filter=16, additional_filters_on_retrain=0, weight_decay_model=5e-4, nesterov=True)


class NasBench201(Space):
    name, title = NAME, 'NAS-Bench-201'
    alpha_names, beta_names = network.ALPHA_NAMES, network.BETA_NAMES
    op_labels = cell_string.OPS
    edges = cell_string.EDGES
    has_imagenet_network = False
    defaults = {'search': dict(BOTH),  # the search recipe of NAS-Bench-201's DARTS runs: DARTS's but for these
                'train': dict(BOTH, cutout=False, auxiliary=False, dropout_rate=0.0, **SHAPE)}
    unused_flags = ('num_nodes',)
    options = ('benchmark_table',)
    curves = (('NAS-Bench-201 test accuracy of the derived cell', TABLE_SERIES),
              ('parameter-free ops in the derived cell', (PARAMETER_FREE_SERIES,)))

    def __init__(self, benchmark_table=None):
        self.table_path = benchmark_table or EMBEDDED
        self.table, self.best = read(self.table_path)

    def supernet(self, x, net):
        return network.supernet(x, net.channels, net.cells, net.data.classes, net.partial_channels,
                                net.edge_normalization, net.mixing)

    def entry(self, text):
        """The table's Entry of a valid cell string."""
        return self.table[text]

    def arch_of(self, text):
        """The arch (the JSON object) of a valid cell string."""
        return dict(search_space=NAME, arch=text, index=self.entry(text).index)

    def derive(self, arrays, max_skip_connect=None):
        return self.arch_of(cell_string.derive(arrays[self.alpha_names[0]], max_skip_connect))

    def check_alphas(self, arrays, source):
        for name, a in arrays.items():
            shape = (len(self.edges), len(self.op_labels) if name in self.alpha_names else 1)
            if a.shape != shape or not np.isfinite(a).all():
                raise UserError('{}: {} must be {} finite numbers (edges x {}), got shape {}'.format(
                    source, name, 'x'.join(map(str, shape)), 'ops' if name in self.alpha_names else '1', a.shape))

    def arch_ops(self, arch):
        ops = cell_string.parse(arch['arch'])
        return {self.alpha_names[0]: [(e, cell_string.OPS.index(op)) for e, op in enumerate(ops)]}

    def cell_weights(self, arrays):
        """{'cell': edges x ops} weights of the supernet's ops (times the normalised betas where given)."""
        w = softmax_weights(np.asarray(arrays[self.alpha_names[0]]))
        if self.beta_names[0] in arrays:
            w = w * normalised_betas(arrays[self.beta_names[0]], self.edges)[:, None]
        return {'cell': w}

    @staticmethod
    def claims(value):
        return cell_string.looks_like(value) or isinstance(value, dict) and value.get('search_space') == NAME

    def parse(self, value, source):
        if isinstance(value, str):
            cell_string.parse(value, source)
            return self.arch_of(value)
        if not isinstance(value, dict):
            raise UserError('{}: expected a JSON object with {}'.format(source, ', '.join(KEYS)))
        extra = sorted(set(value) - set(KEYS))
        if extra:
            raise UserError('{}: unknown key {!r} (a NAS-Bench-201 arch file holds {})'.format(
                source, extra[0], ', '.join(KEYS)))
        if 'arch' not in value:
            raise UserError('{}: the cell string "arch" is missing'.format(source))
        cell_string.parse(value['arch'], '{}: arch'.format(source))
        arch = self.arch_of(value['arch'])
        if 'index' in value and value['index'] != arch['index']:
            raise UserError('{}: index {} is not the index of its cell in the table {} ({})'.format(
                source, json.dumps(value['index']), self.table_path, arch['index']))
        return arch

    def document(self, arch):
        return json.dumps({key: arch[key] for key in KEYS}, indent=1) + '\n'

    def describe(self, arch):
        return 'NAS-Bench-201 cell #{}: {}\n{}'.format(arch['index'], arch['arch'], cell_string.describe(arch['arch']))

    def diagrams(self, arch):
        edges = [(str(i), str(node), op) for node, pairs in cell_string.nodes(arch['arch']) for op, i in pairs]
        return {'cell': Diagram(('0',), str(cell_string.NODES - 1), edges)}

    def network(self, x, arch, net, test=False, drop_path=None):
        return network.network(x, arch['arch'], net.channels, net.cells, net.data.classes, net.auxiliary, test,
                               drop_path)

    @classmethod
    def downsampling(cls, imagenet):
        return 2 ** (network.STAGES - 1)

    def epoch_values(self, arch):
        values = dict(zip(TABLE_SERIES, self.entry(arch['arch']).accuracies))
        values[PARAMETER_FREE_SERIES] = sum(op in cell_string.PARAMETER_FREE for op in cell_string.parse(arch['arch']))
        return values

    def accuracy_line(self, arch):
        """'NAS-Bench-201 #N: CIFAR-10 xx.xx %, ... (best in the space ...)'."""
        return 'NAS-Bench-201 #{}: {} (best in the space {})'.format(arch['index'], ', '.join(
            '{} {:.2f} %'.format(d, a) for d, a in zip(DATASETS, self.entry(arch['arch']).accuracies)),
            ' / '.join('{:.2f}'.format(b) for b in self.best))

    def arch_results(self, arch):
        keys = ('cifar10_test_acc', 'cifar100_test_acc', 'imagenet16_120_test_acc')
        return self.accuracy_line(arch), dict(nas_bench_201_index=arch['index'],
                                              **dict(zip(keys, self.entry(arch['arch']).accuracies)))
