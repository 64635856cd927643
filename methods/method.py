"""What a search method is to the search: the interface every method implements.

A method decides four things: how an edge's alphas become the mixing weights of its ops in the
supernet's forward pass (``mixing``), the alpha objective and its gradient (``alpha_gradient``),
its schedules (``schedule``: a temperature, a regulariser's weight), the weight step's gradient
(``weight_gradient``: on perturbed mixing weights, on a sampled architecture) and, where it
differs, the derivation (``derive``). The search builds the supernet once with the method's mixing, attaches
the method to the built graph and its solvers, and at every step asks for the schedule of the
epoch and, unless the alphas are warming up, for the alpha gradient. A method's schedule and its
random draws follow from the epoch, the iteration and the seed, so that a resumed search ends
exactly as an uninterrupted one without state of the method's own. docs/architecture.md,
"Adding a search method", says what a new one provides.
"""
import nnabla.functions as F

from model_search import forward_backward, op_weights


class Method:
    """A search method. The attributes are facts; the methods are what the search asks of it."""

    name = None     # its --method value
    title = None    # its name and paper, in prose
    options = {}    # {flag: non-negative default} of the flags of its own (None in the flags of another method)
    refuses = {}    # {flag: its default}: the search's flags that mean nothing for it, refused when set otherwise
    updates_alphas = True  # whether it has an alpha step (and so a Hessian eigenvalue of the alphas)
    ranking_batches = 0    # the fixed validation batches its derivation reads (rank_on)

    def __init__(self, seed=0, **values):
        """``values``: its options and the search's facts (second_order, eta, the weights' SGD), of which
        it keeps what it reads."""
        self.seed = seed
        self.options = {name: values.get(name, default) for name, default in type(self).options.items()}

    def mixing(self, alpha, table):
        """The mixing weights of the (edges x ops) Variable ``alpha``: one (1, 1) Variable per edge and
        op, None for the op ``table`` says is never computed (model_search.op_weights: softmax)."""
        return op_weights(alpha, table)

    def mean_weights(self, alpha):
        """The expected mixing weights of the (edges x ops) Variable ``alpha`` as a graph: softmax, the
        op probabilities of DARTS and of GDAS's draws (the cost penalty's weights, methods/cost.py)."""
        return F.softmax(alpha, axis=1)

    def attach(self, graph, solvers):
        """Build what the alpha gradient needs on the search graph (model_search.search_graph) and its
        solvers ({'weights', 'alphas'})."""
        self.graph, self.solvers = graph, solvers

    def schedule(self, epoch, epochs):
        """Set the method's schedules for ``epoch`` (from 0) of ``epochs``."""

    def weight_gradient(self, train_batch, iteration):
        """Leave the gradient of the training loss in the weights' .grad for the weight step of
        ``iteration``; returns the training loss and error."""
        return forward_backward(self.graph, train_batch, {'weights': self.solvers['weights']})

    def alpha_gradient(self, train_batch, valid_batch, iteration=0):
        """Leave the gradient of the alpha objective in the alphas' .grad at ``iteration``; returns the
        validation loss and error."""
        raise NotImplementedError

    def rank_on(self, batches):
        """Keep ``batches``, ranking_batches fixed validation batches, for the derivation."""

    def epoch_values(self):
        """{series name: value} of the method's schedules, logged every epoch."""
        return {}

    def derive(self, space, arrays, max_skip_connect=None):
        """The arch of ``arrays`` ({short name: array} of the alphas and betas) in ``space``."""
        return space.derive(arrays, max_skip_connect)
