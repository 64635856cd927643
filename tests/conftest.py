"""Fixtures of every test: the project root on sys.path, a tiny CIFAR-10 archive, an empty
parameter scope. The plain helpers are in helpers.py."""
import signal
import sys

import pytest

from helpers import ROOT, write_archive


def pytest_configure(config):
    """Make the project's top-level modules (args, data_iterator, ...) importable by the tests, and
    give the jobs they start the default SIGINT: a shell starts a background job (make test &)
    with SIGINT ignored, which its children would inherit, and the SIGINT cases would not test."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope='session')
def archive(tmp_path_factory):
    """Path (str) of a tiny archive, read only: 40 training images (5 batches of 8) and 10 test
    images, labels index % 10."""
    return str(write_archive(tmp_path_factory.mktemp('data') / 'cifar-10-python.tar.gz', 8, 10))


@pytest.fixture
def fresh_parameters():
    """Build the test's graphs in an empty global parameter scope, and leave it empty."""
    import nnabla as nn
    nn.clear_parameters()
    yield
    nn.clear_parameters()

