"""DARTS- (Chu, Wang, Zhang, Zhang, Wei & Yan, "DARTS-: Robustly Stepping out of Performance
Collapse Without Indicators", ICLR 2021): DARTS with an auxiliary skip connection on every edge,

    edge(x) = sum_k softmax(a)_k op_k(x) + beta_t skip(x),   beta_t = --skip-beta * (1 - epoch / epochs)

(epoch from 0: linear decay to 0 over the search, the paper's default schedule with beta_0 = 1).
The auxiliary path carries the gradient that otherwise makes the skip connection's alpha win, so
that the alphas can weigh the ops on their merit. Here it is added to the weight of the edge's
skip_connect op: on an edge of stride 1 the skip is the identity, as in the paper; on a reduction
edge of the DARTS space it is the edge's own skip_connect op (a factorized reduction), where the
paper's code gives the auxiliary path a factorized reduction of its own. The alpha gradient
(first or second order) and the derivation, from the alphas alone, are DARTS's.
"""
import nnabla as nn
import nnabla.functions as F

from methods.darts import Darts
from model_search import op_weights


class DartsMinus(Darts):
    """DARTS plus an auxiliary skip connection of weight beta_t on every edge (the module's text)."""

    name, title = 'darts-minus', 'DARTS- (Chu et al., ICLR 2021)'
    options = {'skip_beta': 1.0}

    def __init__(self, **values):
        super().__init__(**values)
        self.beta = nn.Variable((1, 1), need_grad=False)
        self.beta.d = self.options['skip_beta']

    def mixing(self, alpha, table):
        """DARTS's softmax weights, beta_t added to the skip_connect op's of every edge."""
        weights = op_weights(alpha, table)
        for row in weights:
            row[table.identity] = F.add2(row[table.identity], self.beta)
        return weights

    def schedule(self, epoch, epochs):
        self.beta.d = self.options['skip_beta'] * (1 - epoch / epochs)

    def epoch_values(self):
        return {'Auxiliary skip weight': self.beta.d.item()}
