"""CIFAR-10 loading, augmentation and resumable batch iterators for the DARTS scripts.

The loader reads the official python-format archive (or its extracted folder) through a
restricted unpickler, so a tampered file cannot run code. The training stream is a pure
function of (seed, stream, global sample index), so a run resumed from a checkpoint sees
exactly the batches it would have seen without the interruption.
"""
import hashlib
import http.client
import io
import os
import pickle
import posixpath
import tarfile
import urllib.error
import zlib

import numpy as np
from nnabla.utils.data_iterator import data_iterator
from nnabla.utils.data_source import DataSource
from nnabla.utils.download import download, get_data_home

from errors import UserError
from files import MB, check_input

CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
CIFAR10_MD5 = 'c58f30108f718f92721af3b95e74349a'
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

ARCHIVE_NAME = 'cifar-10-python.tar.gz'
FOLDER = 'cifar-10-batches-py'
MAX_ARCHIVE = 1024 * MB  # the official archive is 163 MB
BATCHES = ('data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5', 'test_batch')
_NUMPY_GLOBALS = frozenset([
    ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
    ('numpy', 'ndarray'), ('numpy', 'dtype'),
    ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
    ('_codecs', 'encode')])


def _why(error):
    """One-line description of an exception, for embedding in a UserError message."""
    return ' '.join('{}: {}'.format(type(error).__name__, error).split())


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays: a batch file can never make it run code."""

    def __init__(self, data, name):
        super().__init__(io.BytesIO(data), encoding='bytes')
        self._name = name

    def find_class(self, module, name):
        """Admit only the few numpy globals an array pickle refers to."""
        if (module, name) not in _NUMPY_GLOBALS:
            raise UserError('refusing to load {}: it asks for {}.{}, which a CIFAR-10 batch never needs'
                            .format(self._name, module, name))
        return super().find_class(module, name)


def _entry(batch, key, name):
    """Value of `key` in an unpickled batch, whose keys are bytes (python 2 file) or str."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise UserError('{}: the batch has no {!r} entry'.format(name, key))


def _parse_batch(data, name):
    """Unpickle and validate one batch; return uint8 images (n, 3, 32, 32) and int32 labels (n,)."""
    try:
        batch = _BatchUnpickler(data, name).load()
    except UserError:
        raise
    except Exception as e:  # a corrupt pickle can fail in many ways; all are the file's fault
        raise UserError('cannot unpickle {}: {}'.format(name, _why(e)))
    if not isinstance(batch, dict):
        raise UserError('{}: expected a dict, found {}'.format(name, type(batch).__name__))
    images, labels = _entry(batch, 'data', name), _entry(batch, 'labels', name)
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 2
            and images.shape[1] == 3072):
        raise UserError('{}: data must be a uint8 array of shape (n, 3072), found {} {}'.format(
            name, getattr(images, 'dtype', type(images).__name__), getattr(images, 'shape', '')))
    if len(images) == 0:
        raise UserError('{}: the batch has no images'.format(name))
    try:
        labels = np.asarray(labels)
    except (TypeError, ValueError):
        labels = np.zeros((0, 0))
    if labels.ndim != 1 or len(labels) != len(images):
        raise UserError('{}: {} labels for {} images'.format(name, labels.size, len(images)))
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserError('{}: labels must be integers, found {}'.format(name, labels.dtype))
    bad = labels[(labels < 0) | (labels > 9)]
    if bad.size:
        raise UserError('{}: label {} is outside 0..9'.format(name, bad[0]))
    return images.reshape(-1, 3, 32, 32), labels.astype(np.int32)


def _batches_from_tar(path):
    """Parse the batches straight from the archive members, reading it once, front to back."""
    found = {}
    try:
        with tarfile.open(path, 'r:gz') as tar:
            for member in tar:  # iterating to the end also detects a truncated archive
                folder, name = posixpath.split(posixpath.normpath(member.name))
                if member.isfile() and folder == FOLDER and name in BATCHES:
                    label = '{}:{}/{}'.format(path, folder, name)
                    found[name] = _parse_batch(tar.extractfile(member).read(), label)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise UserError('cannot read {}: not a tar.gz archive, or truncated ({})'.format(path, _why(e)))
    missing = [b for b in BATCHES if b not in found]
    if missing:
        raise UserError('{}: missing batch {}/{}'.format(path, FOLDER, missing[0]))
    return found


def _batches_from_folder(folder):
    """Parse the batches of an extracted `cifar-10-batches-py` folder (or of its parent)."""
    if os.path.isdir(os.path.join(folder, FOLDER)):
        folder = os.path.join(folder, FOLDER)
    found = {}
    for b in BATCHES:
        path = os.path.join(folder, b)
        if not os.path.isfile(path):
            raise UserError('{}: missing batch {}'.format(folder, b))
        try:
            with open(path, 'rb') as f:
                data = f.read()
        except OSError as e:
            raise UserError('cannot read {}: {}'.format(path, _why(e)))
        found[b] = _parse_batch(data, path)
    return found


def _check_md5(path, md5):
    """Raise UserError and remove `path` unless its md5 is `md5`: a bad copy must not linger."""
    digest = hashlib.md5()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    if digest.hexdigest() != md5:
        os.remove(path)
        raise UserError('{}: md5 is {}, expected {}; the file was removed, run again to download it '
                        'or pass --dataset-path'.format(path, digest.hexdigest(), md5))


def _fetch_archive(url, md5, home):
    """Path of the md5-checked archive in `home`, downloading it first if it is missing."""
    path = os.path.join(home, ARCHIVE_NAME)
    if os.path.exists(path):
        _check_md5(path, md5)
        return path
    part = path + '.part'
    if os.path.exists(part):  # nnabla's download() keeps an existing file instead of fetching
        os.remove(part)
    try:
        download(url, output_file=part, open_file=False)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        if os.path.exists(part):
            os.remove(part)
        raise UserError('cannot download CIFAR-10 from {} ({}); pass a local copy with --dataset-path'
                        .format(url, getattr(e, 'reason', None) or _why(e)))
    _check_md5(part, md5)
    os.replace(part, path)
    return path


def download_url():
    """The URL the scripts download CIFAR-10 from: CIFAR10_URL, unless $DARTS_CIFAR10_URL is set.

    The variable is for the tests only (a local server serving a wrong file); the md5 checked
    is CIFAR10_MD5 whatever the URL.
    """
    return os.environ.get('DARTS_CIFAR10_URL') or CIFAR10_URL


def load_cifar10(dataset_path=None, url=CIFAR10_URL, md5=CIFAR10_MD5):
    """Return (train_images, train_labels, test_images, test_labels): uint8 NCHW, int32 labels.

    `dataset_path` is the python-format .tar.gz or its extracted folder; None means the
    archive in nnabla's data home, downloaded there (and md5-checked) when missing.
    """
    if dataset_path is None:
        dataset_path = _fetch_archive(url, md5, get_data_home())
    check_input(dataset_path, 'dataset', MAX_ARCHIVE, folder_ok=True)
    batches = (_batches_from_folder if os.path.isdir(dataset_path) else _batches_from_tar)(dataset_path)
    train = [batches[b] for b in BATCHES[:5]]
    test_images, test_labels = batches['test_batch']
    return (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]),
            test_images, test_labels)


def take_first(images, labels, n):
    """The first ``n`` images and labels (all of them when n is 0): quick trials on a subset."""
    return (images[:n], labels[:n]) if n else (images, labels)


def _epoch_draws(seed, stream, epoch, n):
    """Random numbers of data epoch `epoch` of `n` images: permutation, dy, dx, flip, cy, cx.

    Always drawn in this order and in full, whatever the shuffle/augment/cutout flags, so
    that the flags never shift which numbers a given image receives.
    """
    rng = np.random.RandomState([seed, stream, epoch])
    order = rng.permutation(n)
    dy, dx = rng.randint(0, 9, n), rng.randint(0, 9, n)
    flip = rng.randint(0, 2, n).astype(bool)
    cy, cx = rng.randint(0, 32, n), rng.randint(0, 32, n)
    return order, dy, dx, flip, cy, cx


class CifarSource(DataSource):
    """In-memory CIFAR-10 source whose samples depend only on (seed, stream, global index).

    Each reset() moves to the next pass ("data epoch") over the images; the first one starts
    at global sample index `start`, which lets a resumed run continue the same stream.
    """

    def __init__(self, images, labels, seed, stream=0, shuffle=True, augment=True, cutout=0, start=0):
        super().__init__(shuffle=shuffle)
        if len(images) == 0 or len(images) != len(labels):
            raise ValueError('CifarSource needs as many labels as images, and at least one')
        self._variables = ('x', 'y')
        self._images, self._labels = images, np.asarray(labels, dtype=np.int32)
        self._size = len(images)
        self._seed, self._stream = seed, stream
        self._augment, self._cutout = augment, cutout
        self._epoch, self._first_position = start // self._size - 1, start % self._size
        self._draws = None  # the current pass's random numbers, drawn by reset()
        mean, std = (np.array(v, dtype=np.float32).reshape(3, 1, 1) for v in (MEAN, STD))
        self._scale, self._shift = 1.0 / (255.0 * std), mean / std  # x = (p / 255 - mean) / std

    def reset(self):
        """Enter the next data epoch: at `start % N` the first time, at position 0 afterwards."""
        self._epoch += 1
        self._draws = _epoch_draws(self._seed, self._stream, self._epoch, self._size)
        self._position, self._first_position = self._first_position, 0

    def _get_data(self, position):
        """Sample at `position` of the current pass: normalised float32 (3,32,32), int32 (1,)."""
        index, dy, dx, flip, cy, cx = (d[position] for d in self._draws)
        index = index if self._shuffle else position
        image = self._images[index]
        if self._augment:
            image = np.pad(image, ((0, 0), (4, 4), (4, 4)))[:, dy:dy + 32, dx:dx + 32]
            if flip:
                image = image[:, :, ::-1]
        x = (image * self._scale - self._shift).astype(np.float32)
        if self._cutout > 0:
            half = self._cutout // 2
            x[:, max(cy - half, 0):min(cy + half, 32), max(cx - half, 0):min(cx + half, 32)] = 0
        return x, np.array([self._labels[index]], dtype=np.int32)


def make_iterator(images, labels, batch_size, seed, stream=0, shuffle=True, augment=True, cutout=0, start=0):
    """nnabla DataIterator over a CifarSource (no memory cache: that wrapper reshuffles on its own)."""
    source = CifarSource(images, labels, seed, stream=stream, shuffle=shuffle, augment=augment,
                         cutout=cutout, start=start)
    return data_iterator(source, batch_size, with_memory_cache=False, use_thread=True)


def search_halves(images, labels):
    """Split the training set into two fixed, disjoint halves: weights train on one, alphas on the other."""
    half = len(images) // 2
    return (images[:half], labels[:half]), (images[half:2 * half], labels[half:2 * half])


def eval_batches(images, labels, batch_size):
    """Yield (x, y, n_valid) over every image exactly once, in stored order, in fixed-size batches.

    The last batch is filled up by wrapping around; only its first `n_valid` rows are real.
    """
    n = len(images)
    iterator = make_iterator(images, labels, batch_size, seed=0, shuffle=False, augment=False)
    try:
        for first in range(0, n, batch_size):
            x, y = iterator.next()
            yield x, y, min(batch_size, n - first)
    finally:
        iterator.close()


