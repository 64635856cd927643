"""The recurrent half of both jobs: the search of the paper's recurrent cell and the retraining of a
recurrent arch, each a language model on a text corpus (--dataset ptb or text). darts_search.py and
darts_train.py hand a run of the recurrent space here after their common checks.

    search:  for each window of the training text (and the next of the validation text):
                 the alpha step on the validation window (DARTS, first or second order)
                 the weight step on the training window (SGD, clip, weight decay)
             every epoch: the derived cell's files, the validation perplexity
    retrain: SGD on the windows, then NT-ASGD once the validation perplexity stalls; every epoch
             the validation and test perplexity (with the averaged weights after the switch);
             at the end the best epoch's weights tested at batch 1, as the paper's code reports it

Windows are --bptt rows of the columns of the token stream (a fixed length: one static graph; the
stream's last, shorter window is left out of training), and each stream's hidden state is carried
from window to window and zeroed when a pass over the stream begins (spaces/darts_rnn/graph.py).
"""
import math
import os

import numpy as np
import nnabla as nn
import nnabla.initializer as I
import nnabla.solvers as S

import corpora
import genotype
import methods
import parallel
from args import loop_plan
from errors import UserError
from export import load_into_network
from files import write_json
from genotype import alpha_dict, named_arrays, write_epoch
from loop import InterruptFlag, TrainingLoop
from model_eval import count_parameters
from model_search import forward_backward
from numerics import Averager, WeightUpdate, asgd_due, momentum_sgd
from plots import draw_cells
from spaces.darts_rnn import network
from spaces.darts_rnn.graph import Evaluator, Rates, Sizes, carried, supernet_weights, training_graph

EVAL_BATCH, TEST_BATCH = 10, 1  # the paper's code's evaluation batch and its final test's
PERPLEXITY = ('Training perplexity', 'Validation perplexity', 'Test perplexity')
CROSS_ENTROPY = 'Training cross entropy'
ASGD = 'NT-ASGD averaging'  # 1 for an epoch whose steps were averaged, and whose averaged weights are evaluated
CURVES = (('perplexity', PERPLEXITY), ('loss', ('Training loss', CROSS_ENTROPY, 'Validation cross entropy')),
          ('learning rate', ('Learning rate',)), ('NT-ASGD', (ASGD,)))


def sizes_of(args, vocabulary):
    return Sizes(vocabulary, args.embedding_size, args.hidden_size, args.batch_size, args.bptt)


def rates_of(args):
    return Rates(args.dropout_output, args.dropout_hidden, args.dropout_x, args.dropout_input, args.dropout_embedding)


class Windows:
    """The windows of a (rows x B) token stream one after another, ``bptt`` rows each, with the
    stream's hidden state (the parameter ``state``), zeroed at the first window of every pass."""

    def __init__(self, stream, bptt, state, what):
        self.stream, self.bptt, self.state = stream, bptt, state
        self.count = (len(stream) - 1) // bptt
        if self.count < 1:
            raise UserError('{} makes {} rows in {} columns: too few for one window of --bptt {}'.format(
                what, len(stream), stream.shape[1], bptt))

    def at(self, iteration):
        """(inputs, targets, the state it starts from, the state parameter) of the window of ``iteration``."""
        index = iteration % self.count
        if index == 0:
            self.state.data.zero()
        x, y = corpora.window(self.stream, index * self.bptt, self.bptt)
        return x, y, self.state.d.copy(), self.state


def streams(corpus, batch, bptt, hidden, names):
    """{split: Windows} of the ``names`` splits of ``corpus`` in ``batch`` columns."""
    return {name: Windows(corpora.columns(getattr(corpus, name), batch, 'the {} text'.format(name)), bptt,
                          carried(name, batch, hidden), 'the {} text'.format(name)) for name in names}


def perplexity(cross_entropy):
    """exp of a mean cross entropy, inf where it overflows (a diverged run's)."""
    return math.exp(cross_entropy) if cross_entropy < 700 else math.inf


def epoch_perplexity(loop):
    """The training perplexity of the epoch's steps so far: exp of their mean cross entropy."""
    return perplexity(loop.state.sums.get(CROSS_ENTROPY, 0.0) / max(loop.state.count, 1))


# ---------------------------------------------------------------- the search


def search_setup(args, vocabulary):
    """The supernet language model of a ``vocabulary`` built once, its solvers and evaluator, and
    ``step(train_window, valid_window, iteration, update_arch=True)``: the alpha step on the
    validation window (DARTS of --second-order, the Adam of the paper's recurrent search), then the
    weight step on the training window, with the iteration's dropout masks. benchmarks/bench.py
    times this same step."""
    sizes = sizes_of(args, vocabulary)
    mixing = supernet_weights()
    graph = training_graph(network.mixed(mixing), sizes, rates_of(args), args.tar)
    solvers = {'weights': momentum_sgd(args.model_lr, args.momentum),
               'alphas': S.Adam(args.arch_lr, beta1=0.9, beta2=0.999)}
    for group, solver in solvers.items():
        solver.set_parameters(graph[group])
    update_weights = WeightUpdate(solvers['weights'], graph['weights'], args.grad_clip_value_model,
                                  args.weight_decay_model)
    method = methods.get(methods.DEFAULT, seed=args.seed, second_order=args.second_order, eta=args.eta,
                         weight_decay=args.weight_decay_model, momentum=args.momentum,
                         unroll_clip=args.grad_clip_value_model)
    method.attach(graph, solvers)

    def step(train, valid, it, update_arch=True):
        graph['feeder'].rng = np.random.RandomState([args.seed, it])
        values = {}
        if update_arch:
            values['Validation cross entropy'] = method.alpha_gradient(train, valid, it)[1]
            solvers['alphas'].weight_decay(args.weight_decay_archs)
            solvers['alphas'].update()
        loss, cross_entropy = method.weight_gradient(train, it)
        update_weights()
        return parallel.world().mean_values(dict(values, **{'Training loss': loss, CROSS_ENTROPY: cross_entropy}))
    return graph, solvers, Evaluator(lambda: network.mixed(mixing, test=True), sizes), step


def search(args, space, state, resumed_from):
    """The recurrent search: the supernet language model built once, the epochs run, the results written."""
    world = parallel.world()
    corpus = corpora.load(args.dataset, args.dataset_path)
    held_out = corpora.columns(corpus.valid, EVAL_BATCH, 'the valid text')
    nn.seed(args.seed)
    text = streams(corpus, args.batch_size, args.bptt, args.hidden_size, ('train', 'valid'))
    graph, solvers, evaluate, search_step = search_setup(args, len(corpus.words))
    world.say('supernet: {} weights, {} alphas; {} words; {} order'.format(
        count_parameters(graph['weights']), count_parameters(graph['alphas']), len(corpus.words),
        'second' if args.second_order else 'first'))
    loop = TrainingLoop(loop_plan(args), state, resumed_from, text['train'].count, solvers, CURVES)
    loop.restore()

    def step(it):
        return search_step(text['train'].at(it), text['valid'].at(it), it,
                           it // text['train'].count >= args.arch_warmup_epochs)

    def end_epoch(epoch, interrupts):
        if world.is_main:
            write_epoch(space.derive(named_arrays(graph['alphas'])), graph['alphas'], space, args.monitor_path, epoch,
                        loop.board)
        return {PERPLEXITY[0]: epoch_perplexity(loop), PERPLEXITY[1]: perplexity(evaluate(held_out, interrupts))}

    try:
        last = loop.run(step, end_epoch)
    finally:
        loop.board.close()
    arch = space.derive(named_arrays(graph['alphas']))
    if world.is_main:
        write_json(alpha_dict(graph['alphas']), os.path.join(args.monitor_path, 'alphas.json'))
        genotype.save(arch, args.model_arch_name, space)
        draw_cells(space.diagrams(arch), args.monitor_path)
        write_json(dict(arch=args.model_arch_name, search_space=space.name, epochs=state.epochs_done,
                        seconds=loop.elapsed(), training_perplexity=last[PERPLEXITY[0]],
                        validation_perplexity=last[PERPLEXITY[1]]), os.path.join(args.monitor_path, 'results.json'),
                   indent=1)
    world.say('{}\nvalidation perplexity: {:.2f}\narchitecture written to {}; retrain it with:\n  {}'.format(
        space.describe(arch), last[PERPLEXITY[1]], args.model_arch_name, retrain_command(args)))
    return 0


def retrain_command(args):
    """The darts_train.py command that retrains the searched cell on the same corpus."""
    path = [] if args.dataset_path is None else ['--dataset-path', args.dataset_path]
    return ' '.join(['python darts_train.py', '--context', args.context, '--dataset', args.dataset] + path +
                    ['--model-arch-name', args.model_arch_name, '--monitor-path', 'result.monitor'])


# ---------------------------------------------------------------- the retraining


def model_parameters(graph):
    """The language model's own parameters (no carried states, averages or kept copies)."""
    return dict(graph['weights'])


def kept(prefix, params):
    """{name: parameter without gradient ``prefix``/name} of the shape of each of ``params``: a copy the
    checkpoints hold (NT-ASGD's averages, the best epoch's weights)."""
    return {name: nn.parameter.get_parameter_or_create('{}/{}'.format(prefix, name), p.shape,
                                                       I.ConstantInitializer(0), need_grad=False)
            for name, p in params.items()}


def copy_into(targets, sources):
    for name, t in targets.items():
        t.d = sources[name].d


class Swapped:
    """While entered, ``params`` hold the values of ``values`` (NT-ASGD's averages); restored after."""

    def __init__(self, params, values):
        self.params, self.values = params, values

    def __enter__(self):
        self.saved = {name: p.d.copy() for name, p in self.params.items()} if self.values else None
        if self.values:
            copy_into(self.params, self.values)

    def __exit__(self, *exc):
        if self.saved:
            for name, p in self.params.items():
                p.d = self.saved[name]


def train_setup(args, arch, vocabulary):
    """The language model of ``arch`` and a ``vocabulary`` built once: its parameters, solver, NT-ASGD's
    Averager (its averages parameters, 'asgd/...'), evaluator, and ``step(window, iteration, average)``:
    forward, backward, clip, decay, update, and with ``average`` the averages' update.
    benchmarks/bench.py times this same step."""
    sizes = sizes_of(args, vocabulary)
    graph = training_graph(network.derived(arch), sizes, rates_of(args), args.tar)
    params = model_parameters(graph)
    averager = Averager(params, kept('asgd', params))
    solver = momentum_sgd(args.model_lr, args.momentum)
    solver.set_parameters(params)
    update = WeightUpdate(solver, params, args.grad_clip_value_model, args.weight_decay_model)

    def step(window, it, average=False):
        graph['feeder'].rng = np.random.RandomState([args.seed, it])
        loss, cross_entropy = forward_backward(graph, window, {'weights': solver})
        update()
        if average:
            averager.update()
        return parallel.world().mean_values({'Training loss': loss, CROSS_ENTROPY: cross_entropy})
    return params, solver, averager, Evaluator(lambda: network.derived(arch), sizes), step


def train(args, space, arch, state, resumed_from):
    """The recurrent retraining: the language model of ``arch`` built once, SGD then NT-ASGD, the
    epochs run, the best epoch's weights tested at batch 1 and written."""
    world = parallel.world()
    corpus = corpora.load(args.dataset, args.dataset_path)
    held_out = {name: corpora.columns(getattr(corpus, name), EVAL_BATCH, 'the {} text'.format(name))
                for name in ('valid', 'test')}
    nn.seed(args.seed)
    text = streams(corpus, args.batch_size, args.bptt, args.hidden_size, ('train',))['train']
    params, solver, averager, evaluate, train_step = train_setup(args, arch, len(corpus.words))
    best = kept('best', params)
    world.say('{}\nparameters: {}'.format(space.describe(arch), count_parameters(params)))
    loop = TrainingLoop(loop_plan(args), state, resumed_from, text.count, {'weights': solver}, CURVES)
    extra = loop.restore()
    extra.setdefault('validation', [])  # the validation cross entropies of the epochs before the switch
    averager.count = extra.get('averaged', 0)
    averages = averager.parameters

    def step(it):
        values = train_step(text.at(it), it, 'switched' in extra)
        extra['averaged'] = averager.count
        return values

    def end_epoch(epoch, interrupts):
        switched = 'switched' in extra  # this epoch's steps were averaged
        with Swapped(params, averages if switched else None):
            values = {name: evaluate(held_out[name], interrupts) for name in ('valid', 'test')}
            if values['valid'] < extra.get('best', math.inf):
                extra['best'] = values['valid']
                copy_into(best, params)
        if not switched:
            if asgd_due(extra['validation'], values['valid']):
                extra['switched'] = epoch + 1  # the averaging starts with the next epoch's steps
            extra['validation'].append(values['valid'])
        return {PERPLEXITY[0]: epoch_perplexity(loop), PERPLEXITY[1]: perplexity(values['valid']),
                PERPLEXITY[2]: perplexity(values['test']), ASGD: float(switched)}

    try:
        last = loop.run(step, end_epoch)
    finally:
        loop.board.close()
    copy_into(params, best)
    with InterruptFlag() as interrupts:  # a stop here leaves the last checkpoint: --resume tests again
        final = perplexity(evaluate(corpora.columns(corpus.test, TEST_BATCH, 'the test text'), interrupts))
    if world.is_main:
        nn.save_parameters(os.path.join(args.model_save_path, 'params.h5'), params)
        write_json(dict(arch=args.model_arch_name, search_space=space.name, dataset=args.dataset,
                        test_perplexity=final, validation_perplexity=perplexity(extra['best']),
                        last_test_perplexity=last[PERPLEXITY[2]], asgd_from_epoch=extra.get('switched'),
                        epochs=args.epoch, iterations=state.iteration, parameters=count_parameters(params),
                        seconds=loop.elapsed()), os.path.join(args.monitor_path, 'results.json'), indent=1)
    world.say('test perplexity: {:.2f} (batch {}, the weights of the best validation epoch)'.format(final, TEST_BATCH))
    return 0


def vocabulary_size(args):
    """The vocabulary of the run's corpus: Penn Treebank's 10,000 words without reading it, a text
    folder's from its training text."""
    return corpora.PTB_WORDS if args.dataset == 'ptb' else len(corpora.load(args.dataset, args.dataset_path).words)


def test_model(arch, sizes):
    """The test graph of ``arch`` for one token (its parameters created: what --summary-only counts)."""
    network.language_model(nn.Variable((1, 1)), nn.Variable((1, sizes.hidden)), network.derived(arch), sizes.vocabulary, sizes.embedding)
    return nn.get_parameters()


def summary(args, space, arch):
    """--summary-only: the cell and the language model's parameters (the paper: 23 M for DARTS_V2)."""
    vocabulary = vocabulary_size(args)  # a text folder's is read from its training text: once
    params = test_model(arch, sizes_of(args, vocabulary))
    return '{}\nlanguage model: {} words, embedding = hidden = {}\nparameters: {}'.format(
        space.describe(arch), vocabulary, args.hidden_size, count_parameters(params))


def evaluate_saved(args, arch):
    """--eval-only: the validation and test perplexity of the saved parameters --model-load-path,
    at batch 1 as the paper's code reports the test."""
    sizes = sizes_of(args, vocabulary_size(args))
    test_model(arch, sizes)
    load_into_network(args.model_load_path)  # checked before the corpus is read
    corpus = corpora.load(args.dataset, args.dataset_path)
    evaluate = Evaluator(lambda: network.derived(arch), sizes)
    with InterruptFlag() as interrupts:
        values = [perplexity(evaluate(corpora.columns(getattr(corpus, name), TEST_BATCH, 'the {} text'.format(name)),
                                      interrupts)) for name in ('valid', 'test')]
    print('validation perplexity: {:.2f}\ntest perplexity: {:.2f} (batch {})'.format(values[0], values[1], TEST_BATCH))
    return 0
