"""What a search space is to the two jobs: the interface every space implements (``Space``), the
description of the network a job builds (``Net``), and what the spaces' cells share as data (the
edges of a DAG cell, softmax rows, PC-DARTS's normalised betas).

The edges of a cell's DAG are model_search's (dag_edges, incoming). A space owns its supernet and
its alphas, the derivation of an arch from them, the arch's format (read, validate, write,
describe, draw), the network that retrains an arch and that network's recipe (its flags'
defaults). The jobs call a space only through ``Space``; docs/architecture.md,
"Adding a search space", says what a new one provides.
"""
import collections

import numpy as np

from model_eval import smallest_aux_input
from model_search import incoming

Net = collections.namedtuple('Net', 'channels cells data partial_channels edge_normalization auxiliary mixing')
Net.__doc__ = """The network a job builds: ``channels`` (C of the first cells), ``cells`` (--num-cells),
``data`` (a tasks.classification.Data), PC-DARTS's ``partial_channels`` and ``edge_normalization``
(the supernet), ``auxiliary`` (the retraining's aux head), ``mixing`` (the supernet: the search
method's mixing weights of an alpha matrix, methods.method.Method.mixing; None: DARTS's softmax)."""
Net.__new__.__defaults__ = (1, False, False, None)
Diagram = collections.namedtuple('Diagram', 'inputs output edges')
Diagram.__doc__ = """A cell as plots.py draws it: the names of its ``inputs`` and of its ``output`` node,
and its ``edges``, (source, target, label) each, an empty label for an edge without an op."""


class Space:
    """A search space. The attributes are facts; the methods are what the jobs ask of it."""

    name = None          # its --search-space value
    title = None         # its name in prose
    alpha_names = ()     # the short names of its alpha Parameters (scope 'alpha'), with edge normalisation's
    beta_names = ()      # the short names of its betas (edge normalisation)
    defaults = {}        # {script: {flag: default}}: its recipes, over args' own defaults
    unused_flags = ()    # flags that mean nothing on it: refused when given
    has_imagenet_network = True  # whether it has the ImageNet network (images above 64 pixels)
    options = ()         # the flags its constructor takes
    op_labels = ()       # its ops' names in pictures, by op id
    edges = ()           # (input, node) of every edge of a cell, in the alphas' row order

    @classmethod
    def for_alphas(cls, raw):
        """The space configured for the alphas object ``raw`` of one of its searches."""
        return cls()

    def supernet(self, x, net):
        """The logits of its supernet on ``x`` (creates its alphas in parameter scope 'alpha')."""
        raise NotImplementedError

    def derive(self, arrays, max_skip_connect=None):
        """The arch of {short name: array} alphas (and betas, where they are)."""
        raise NotImplementedError

    def check_alphas(self, arrays, source):
        """Raise UserError if ``arrays`` ({short name: array}, read from ``source``) are not its alphas."""
        raise NotImplementedError

    def parse(self, value, source):
        """Its arch of ``value``: a JSON object read from ``source``, or a name or string that the
        space knows (DARTS_V2, a cell string); raise UserError naming what is wrong."""
        raise NotImplementedError

    def claims(self, value):
        """Whether ``value`` (a JSON object or a name) is written in its arch format."""
        raise NotImplementedError

    def document(self, arch):
        """The arch as the JSON text of its file."""
        raise NotImplementedError

    def describe(self, arch):
        """The arch in words, for the jobs' output."""
        raise NotImplementedError

    def diagrams(self, arch):
        """{picture name (normal_cell: normal_cell.png): Diagram} of the arch's cells."""
        raise NotImplementedError

    def network(self, x, arch, net, test=False, drop_path=None):
        """(logits, aux logits or None) of the network that retrains ``arch``."""
        raise NotImplementedError

    @classmethod
    def downsampling(cls, imagenet):
        """How many times smaller the last cells' maps are than the images (a power of two)."""
        raise NotImplementedError

    @classmethod
    def network_title(cls, imagenet):
        """The network's name in a message."""
        return cls.title

    @classmethod
    def image_size_rules(cls, size, imagenet, auxiliary):
        """[(holds, message)] of an image side: the network halves it at each reduction, which needs
        it even; the aux head needs maps of model_eval.smallest_aux_input at least."""
        factor = cls.downsampling(imagenet)
        rules = [(size > 0 and size % factor == 0, '--image-size {} must be a multiple of {}: the {} network halves '
                  'it {} times'.format(size, factor, cls.network_title(imagenet), factor.bit_length() - 1))]
        smallest = smallest_aux_input(imagenet)
        if auxiliary:
            rules.append((size // factor >= smallest, '--image-size {} leaves {}x{} maps for the aux head, which '
                          'needs {}x{}: use --image-size {} or more, or --auxiliary False'.format(
                              size, size // factor, size // factor, smallest, smallest, smallest * factor)))
        return rules

    def epoch_values(self, arch):
        """{series name: value} that the search logs for the arch derived at an epoch's end."""
        return {}

    curves = ()          # the learning-curves panels of epoch_values' series

    def cell_alpha(self, cell, cells):
        """The short name of the alpha matrix that weighs the edges of supernet cell ``cell`` (from 0)
        of ``cells`` (--num-cells)."""
        return self.alpha_names[0]

    def arch_ops(self, arch):
        """{alpha short name: [(edge row, op id)]}: the op the arch keeps on each edge it keeps."""
        raise NotImplementedError

    def arch_results(self, arch):
        """(line, {key: value}) that the search prints and writes into its results for its final arch."""
        return None, {}


def softmax_weights(alpha):
    """The softmax of each row of alphas: the weights of the ops in the mixed op of each edge."""
    w = np.exp(alpha - alpha.max(axis=1, keepdims=True))
    return w / w.sum(axis=1, keepdims=True)


def normalised_betas(beta, edge_list):
    """PC-DARTS's edge weights: each edge's beta, softmax-normalised over the edges into its node."""
    beta, weights = np.ravel(beta), np.zeros(len(edge_list))
    for j in sorted({node for _, node in edge_list}):
        rows = incoming(edge_list, j)
        weights[rows] = softmax_weights(beta[rows][None])[0]
    return weights


def is_int(value):
    """JSON integers only: not booleans, not floats."""
    return isinstance(value, int) and not isinstance(value, bool)
