"""Fixtures of every test: the project root on sys.path, a tiny CIFAR-10 archive, an empty
parameter scope; and the fault suite's tally, printed at the end and written to
tests/faults/results.json (results-partial.json after a marker or keyword selection), gathered
from every worker under pytest-xdist (make test runs -n 2). The plain helpers are in helpers.py."""
import json
import os
import signal
import sys
import time

import pytest

from helpers import ROOT, write_archive


def pytest_configure(config):
    """Make the project's top-level modules (args, data_iterator, ...) importable by the tests, set
    up nnabla's CPU backend as the scripts do (device.answer_relative_imports), and give the jobs
    they start the default SIGINT: a shell starts a background job (make test &) with SIGINT
    ignored, which its children would inherit, and the SIGINT cases would not test."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import device
    device.device_context('cpu', 0, 'float')  # nnabla's imports answered at once, as in the scripts
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope='session')
def archive(tmp_path_factory):
    """Path (str) of a tiny archive, read only: 40 training images (5 batches of 8) and 10 test
    images, labels index % 10."""
    return str(write_archive(tmp_path_factory.mktemp('data') / 'cifar-10-python.tar.gz', 8, 10))


@pytest.fixture
def any_size(monkeypatch):
    """numpy_functions' numpy functions on the tests' small arrays too (they are numpy's only from
    a size that the tests' tiny networks do not reach)."""
    import numpy_functions
    monkeypatch.setattr(numpy_functions, 'MIN_WORK', dict.fromkeys(numpy_functions.MIN_WORK, 0))


@pytest.fixture(params=['nnabla', 'numpy'])
def functions(request):
    """Run the test with nnabla's functions, then with numpy_functions' numpy ones on any size."""
    if request.param == 'numpy':
        request.getfixturevalue('any_size')
    return request.param


@pytest.fixture
def fresh_parameters():
    """Build the test's graphs in an empty global parameter scope, and leave it empty."""
    import nnabla as nn
    nn.clear_parameters()
    yield
    nn.clear_parameters()


# ---------------------------------------------------------------- the fault tally

_STARTED = time.time()


def pytest_sessionfinish(session):
    """A pytest-xdist worker hands its part of the tally to the controller."""
    if hasattr(session.config, 'workeroutput'):
        from faults import faultlib
        session.config.workeroutput['fault_tally'] = json.dumps(faultlib.TALLY)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    from faults import faultlib
    faultlib.TALLY.extend(json.loads(getattr(node, 'workeroutput', {}).get('fault_tally', '[]')))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from faults import faultlib
    kinds = faultlib.summary()
    if not kinds:
        return
    write = terminalreporter.write_line
    write('')
    write('fault suite: faults injected / runs / runs that ended as required')
    for kind, k in sorted(kinds.items()):
        write('  {:<46} {:>4} faults {:>4} runs {:>4} ok'.format(kind, k['faults'], k['runs'], k['ok']))
        for hit, n in sorted(k['hits'].items()):
            write('      {:<42} {:>4}'.format(hit, n))
    partial = bool(config.option.markexpr or config.option.keyword or getattr(config.option, 'lf', False))
    name = 'results-partial.json' if partial else 'results.json'
    path = os.path.join(faultlib.HERE, name)
    with open(path, 'w') as f:
        json.dump(dict(kinds=kinds, seconds=round(time.time() - _STARTED, 1), exit_status=int(exitstatus),
                       selection=dict(markers=config.option.markexpr, keywords=config.option.keyword,
                                      args=[str(a) for a in config.args]),
                       cases=faultlib.TALLY), f, indent=1)
    write('figures written to {}'.format(os.path.relpath(path, faultlib.ROOT)))
