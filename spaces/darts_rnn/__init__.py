"""The paper's recurrent space (DARTS, section 3 and appendix A.1.2): a cell of 8 nodes after s0,
each reading one earlier node through one of four activations, searched and retrained in a
language model on a text corpus (--dataset ptb or text). Its arch format (arch.py), its cells
(cell.py), the language model (network.py) and its graphs (graph.py); the jobs: recurrent.py.
"""
import json

import numpy as np

from errors import UserError
from spaces.darts_rnn import arch as rnn_arch
from spaces.darts_rnn.graph import ALPHA
from spaces.space import Diagram, Space, softmax_weights

NAME = rnn_arch.NAME
# the paper's recipes (its rnn/train_search.py and rnn/train.py): embedding = hidden size, batch, BPTT,
# SGD lr (constant, NT-ASGD in the retraining), clip, weight decay, the dropouts, TAR, the alphas' Adam
BOTH = dict(bptt=35, lr_schedule='constant', grad_clip_value_model=0.25, momentum=0.0, dropout_output=0.75,
            dropout_hidden=0.25, dropout_x=0.75, dropout_input=0.2, tar=1e-3, model_lr=20.0, min_model_lr=0.0)
SEARCH = dict(BOTH, epoch=50, batch_size=256, embedding_size=300, hidden_size=300, weight_decay_model=5e-7,
              dropout_embedding=0.0, arch_lr=3e-3, hessian_every=0)
TRAIN = dict(BOTH, epoch=8000, batch_size=64, embedding_size=850, hidden_size=850, weight_decay_model=8e-7,
             dropout_embedding=0.1)


class DartsRnn(Space):
    name, title = NAME, 'DARTS recurrent'
    alpha_names = (ALPHA,)
    op_labels = rnn_arch.OPS
    edges = rnn_arch.EDGES
    has_imagenet_network = False
    defaults = {'search': SEARCH, 'train': TRAIN}
    unused_flags = ('num_cells', 'num_nodes', 'output_filter', 'additional_filters_on_retrain', 'image_size',
                    'color_jitter', 'cutout', 'auxiliary', 'dropout_rate', 'label_smoothing', 'nesterov')

    def derive(self, arrays, max_skip_connect=None):
        return rnn_arch.derive(arrays[ALPHA])

    def check_alphas(self, arrays, source):
        shape = (len(self.edges), len(self.op_labels))
        for name, a in arrays.items():
            if name != ALPHA or a.shape != shape or not np.isfinite(a).all():
                raise UserError('{}: the recurrent space\'s alphas are {} ({} finite numbers), got {} of shape {}'.format(
                    source, ALPHA, 'x'.join(map(str, shape)), name, a.shape))

    @staticmethod
    def claims(value):
        return value in rnn_arch.PAPER_ARCHS if isinstance(value, str) else \
            isinstance(value, dict) and value.get('search_space') == NAME

    def parse(self, value, source):
        """Its arch (a tuple of 8 (op, input) pairs) of a name, a JSON object or such pairs."""
        return rnn_arch.validate(value, source) if isinstance(value, (list, tuple)) else rnn_arch.parse(value, source)

    def document(self, arch):
        return json.dumps(rnn_arch.document(arch), indent=1) + '\n'

    def describe(self, arch):
        return 'recurrent cell: ' + ', '.join('{}: {}({})'.format(node, op, source)
                                              for node, (op, source) in enumerate(arch, 1))

    def diagrams(self, arch):
        edges = [('x_t', '0', ''), ('h_{t-1}', '0', '')] + [(str(source), str(node), op)
                                                            for node, (op, source) in enumerate(arch, 1)]
        edges += [(str(node), 'h_t', '') for node in range(1, rnn_arch.NODES + 1)]
        return {'recurrent_cell': Diagram(('x_t', 'h_{t-1}'), 'h_t', edges)}

    def cell_weights(self, arrays):
        return {'recurrent': softmax_weights(np.asarray(arrays[ALPHA]))}

    def arch_ops(self, arch):
        return {ALPHA: [(rnn_arch.EDGES.index((source, node)), rnn_arch.OPS.index(op))
                        for node, (op, source) in enumerate(arch, 1)]}

    @classmethod
    def image_size_rules(cls, size, imagenet, auxiliary):
        return []
