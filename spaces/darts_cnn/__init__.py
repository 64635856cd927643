"""The DARTS space (Liu et al., ICLR 2019): the convolutional cell of the paper, a normal and a
reduction cell of ``num_nodes`` nodes (two inputs, the intermediate nodes, their concatenation)
searched on an 8-cell supernet and retrained in a 20-cell network. The arch format is the seed's
JSON (arch.py); the networks are network.py's."""
from operations import IDENTITY, OP_NAMES
from spaces.darts_cnn import arch as darts_arch
from spaces.darts_cnn import network
from spaces.space import Diagram, Space

PARAMETER_FREE_SERIES = {'arch_normal': 'Parameter-free ops normal', 'arch_reduction': 'Parameter-free ops reduction'}
INPUTS, OUTPUT = ('c_{k-2}', 'c_{k-1}'), 'c_{k}'  # the diagram's names of the cell's inputs and output
OP_LABELS = tuple('skip_connect' if k == IDENTITY else name for k, name in enumerate(OP_NAMES))  # as the paper


class DartsCnn(Space):
    name, title = 'darts', 'DARTS'
    alpha_names, beta_names = darts_arch.ALPHA_NAMES, darts_arch.BETA_NAMES
    op_labels = OP_LABELS
    unused_flags = ('benchmark_table',)
    options = ('num_nodes',)
    curves = (('parameter-free ops in the derived cells', tuple(PARAMETER_FREE_SERIES.values())),)

    def __init__(self, num_nodes=7):
        self.num_nodes = num_nodes
        self.edges = darts_arch.edges(num_nodes)

    @classmethod
    def for_alphas(cls, raw):
        return cls(darts_arch.nodes_of_rows(len(raw[darts_arch.ALPHA_NAMES[0]])))

    def supernet(self, x, net):
        return network.supernet(x, net.channels, net.cells, self.num_nodes, net.data.classes, net.partial_channels,
                                net.edge_normalization, net.data.imagenet, net.mixing)

    def derive(self, arrays, max_skip_connect=None):
        return darts_arch.derive_named(arrays, self.num_nodes, max_skip_connect)

    def check_alphas(self, arrays, source):
        darts_arch.check_alphas(arrays, self.num_nodes, source)

    def cell_alpha(self, cell, cells):
        return darts_arch.ALPHA_NAMES[cell in network.reduction_cells(cells)]

    def arch_ops(self, arch):
        rows = {edge: e for e, edge in enumerate(self.edges)}
        return {alpha: [(rows[(i, node)], op) for node, pairs in darts_arch.nodes(arch[cell]) for op, i in pairs]
                for cell, alpha in zip(darts_arch.CELLS, darts_arch.ALPHA_NAMES)}

    def cell_weights(self, arrays):
        """{cell: edges x ops} weights of the supernet's ops (alphas.png, genotype.py evolution)."""
        return darts_arch.cell_weights(arrays)

    @staticmethod
    def claims(value):
        return value in darts_arch.PAPER_ARCHS if isinstance(value, str) else isinstance(value, dict)

    def parse(self, value, source):
        arch = darts_arch.PAPER_ARCHS.get(value, value) if isinstance(value, str) else value
        darts_arch.validate(arch, self.num_nodes, source)
        return arch

    def document(self, arch):
        return darts_arch.document(arch)

    def describe(self, arch):
        return darts_arch.describe(arch)

    def diagrams(self, arch):
        def name(index):
            return INPUTS[index] if index < 2 else str(index - 2)
        found = {}
        for cell in darts_arch.CELLS:
            cell_nodes = darts_arch.nodes(arch[cell])
            found[cell[len('arch_'):] + '_cell'] = Diagram(INPUTS, OUTPUT, [
                (name(inp), name(node), OP_LABELS[op]) for node, pairs in cell_nodes for op, inp in pairs] +
                [(name(node), OUTPUT, '') for node, _ in cell_nodes])
        return found

    def network(self, x, arch, net, test=False, drop_path=None):
        return network.network(x, arch, net.channels, net.cells, net.data.classes, net.auxiliary, test, drop_path,
                               net.data.imagenet)

    @classmethod
    def downsampling(cls, imagenet):
        return network.downsampling(imagenet)

    @classmethod
    def network_title(cls, imagenet):
        return 'ImageNet' if imagenet else 'CIFAR'

    def epoch_values(self, arch):
        return {PARAMETER_FREE_SERIES[cell]: count for cell, count in darts_arch.parameter_free(arch).items()}
