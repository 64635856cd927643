"""β-DARTS (Ye, Li, Fang, Chen, Chen, Ouyang, "β-DARTS: Beta-Decay Regularization for Differentiable
Architecture Search", CVPR 2022): DARTS with the Beta-Decay regulariser added to the alpha objective,

    L_val(w, a) + lambda_t * sum over alpha matrices of mean over edges e of logsumexp_k a_ek,

whose gradient, lambda_t softmax(a_e) on every edge, pulls the alphas of each edge towards a
common value and so keeps the softmax from saturating on one op (the skip connections of a
collapse). lambda_t rises linearly: lambda_t = --beta-decay-weight * epoch / epochs (epoch from
0), the weight of the paper's code (0 + 50 * epoch / 100 over its 50 epochs) at the default 25.
The mixing, the alpha gradient of the loss (first or second order) and the derivation are
DARTS's.
"""
import nnabla as nn
import nnabla.functions as F

from methods.darts import Darts
from model_search import ALPHA_PREFIXES


def logsumexp_rows(a):
    """(rows, 1): log sum_k exp(a_rk), shifted by the row's max for range."""
    m = F.max(a, axis=1, keepdims=True)
    return F.add2(m, F.log(F.sum(F.exp(F.sub2(a, m)), axis=1, keepdims=True)))


def beta_decay(alphas):
    """The Beta-Decay regulariser of the alpha Variables ``alphas`` (the betas of edge normalisation
    are not in it): the sum over the matrices of the mean over their rows of logsumexp."""
    terms = [F.mean(logsumexp_rows(a)) for a in alphas]
    return terms[0] if len(terms) == 1 else F.add_n(*terms)


class BetaDarts(Darts):
    """DARTS plus lambda_t times the Beta-Decay regulariser in the alpha objective (the module's text)."""

    name, title = 'beta-darts', 'β-DARTS (Ye et al., CVPR 2022)'
    options = {'beta_decay_weight': 25.0}

    def attach(self, graph, solvers):
        super().attach(graph, solvers)
        alphas = [a for name, a in sorted(graph['alphas'].items()) if name.split('/')[-1].startswith(ALPHA_PREFIXES[0])]
        self.weight = nn.Variable(())
        self.regulariser = F.mul2(self.weight, beta_decay(alphas))
        self.regulariser.persistent = True

    def schedule(self, epoch, epochs):
        self.weight.d = self.options['beta_decay_weight'] * epoch / epochs

    def alpha_gradient(self, train_batch, valid_batch, iteration):
        """The loss's alpha gradient (DARTS's), plus lambda_t times the regulariser's, accumulated into
        the alphas' .grad by a backward of the regulariser."""
        valid = super().alpha_gradient(train_batch, valid_batch, iteration)
        self.regulariser.forward(clear_no_need_grad=True)
        self.regulariser.backward(clear_buffer=True)
        return valid

    def epoch_values(self):
        return {'Beta-decay weight': float(self.weight.d), 'Beta-decay term': float(self.regulariser.d)}
