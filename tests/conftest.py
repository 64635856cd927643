"""Shared test helpers: the project root on sys.path and tiny CIFAR-10-format archives."""
import io
import os
import pickle
import sys
import tarfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
    """Make the project's top-level modules (args, data_iterator, ...) importable by the tests."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)


def _add_member(tar, name, data):
    """Add a regular file `name` holding the bytes `data` to the open tarfile `tar`."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_archive(path, train_per_batch, n_test, mutate=None, seed=0):
    """Write a tiny python-format CIFAR-10 .tar.gz at `path` and return `path`.

    Pixels are random (from `seed`); labels are the running index % 10 (train and test
    counted separately). `mutate(name, batch_dict)` may return a replacement dict, raw
    bytes to store instead, or None to leave the member out.
    """
    rng = np.random.RandomState(seed)
    sizes = [('data_batch_%d' % k, train_per_batch) for k in range(1, 6)] + [('test_batch', n_test)]
    with tarfile.open(str(path), 'w:gz') as tar:
        index = 0
        for name, n in sizes:
            index = 0 if name == 'test_batch' else index
            batch = {b'data': rng.randint(0, 256, (n, 3072)).astype(np.uint8),
                     b'labels': [(index + i) % 10 for i in range(n)],
                     b'batch_label': name.encode(), b'filenames': [b'img_%d.png' % i for i in range(n)]}
            index += n
            content = batch if mutate is None else mutate(name, batch)
            if content is not None:
                data = content if isinstance(content, bytes) else pickle.dumps(content, protocol=2)
                _add_member(tar, 'cifar-10-batches-py/' + name, data)
        meta = {b'label_names': [b'class%d' % i for i in range(10)], b'num_cases_per_batch': train_per_batch}
        _add_member(tar, 'cifar-10-batches-py/batches.meta', pickle.dumps(meta, protocol=2))
    return path


def replace_entry(member, key, fn):
    """A ``mutate`` for write_archive that applies ``fn`` to entry ``key`` of batch ``member`` only."""
    def mutate(name, batch):
        if name == member:
            batch[key] = fn(batch[key])
        return batch
    return mutate


def snapshot(folder):
    """{relative path: bytes} of every file under ``folder`` (nothing if it does not exist)."""
    files = {}
    for root, _, names in os.walk(str(folder)):
        for name in names:
            path = os.path.join(root, name)
            with open(path, 'rb') as f:
                files[os.path.relpath(path, str(folder))] = f.read()
    return files


@pytest.fixture
def cifar_archive(tmp_path):
    """Path of a tiny archive: 5 training batches of 8 images and 10 test images, labels index % 10."""
    return write_archive(tmp_path / 'cifar-10-python.tar.gz', 8, 10)


def grouped_depthwise(x, kernel, stride=1, pad=0, dilation=1):
    """operations.depthwise written as a grouped convolution on the same (C, k, k) weights: the
    plain formulation, and one with a double backward (nnabla's depthwise convolution has none)."""
    import nnabla as nn
    import nnabla.functions as F
    import nnabla.initializer as I
    c = x.shape[1]
    with nn.parameter_scope('dw/depthwise_conv'):
        w = nn.parameter.get_parameter_or_create('W', (c, kernel, kernel), I.UniformInitializer((-0.5, 0.5)))
    return F.convolution(x, F.reshape(w, (c, 1, kernel, kernel)), pad=(pad, pad), stride=(stride, stride),
                         dilation=(dilation, dilation), group=c)
