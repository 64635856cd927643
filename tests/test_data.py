"""Tests of data_iterator: loading and validating CIFAR-10, augmentation, resumable iterators."""
import hashlib
import os
import pickle
import tarfile
import urllib.error

import numpy as np
import pytest

import data_iterator as di
from errors import UserError
from conftest import replace_entry, write_archive


def _md5(path):
    """md5 hex digest of a file."""
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


def _take(iterator, n):
    """The next `n` batches of `iterator`, which is then closed."""
    try:
        return [iterator.next() for _ in range(n)]
    finally:
        iterator.close()


def _indexed_images(n, seed=0):
    """n random uint8 images whose pixel [0, 0, 0] is their own index (decodable after normalising)."""
    images = np.random.RandomState(seed).randint(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    images[:, 0, 0, 0] = np.arange(n)
    return images, np.arange(n, dtype=np.int32) % 10


def _decode_index(x):
    """Undo the normalisation of pixel [0, 0, 0] of each row of a batch (no augmentation)."""
    return np.rint((x[:, 0, 0, 0] * di.STD[0] + di.MEAN[0]) * 255).astype(int)


def _normalise(image):
    """Reference normalisation of a uint8 CHW image, written independently of the module."""
    mean, std = np.array(di.MEAN).reshape(3, 1, 1), np.array(di.STD).reshape(3, 1, 1)
    return (image / 255.0 - mean) / std


# ---------------------------------------------------------------- loading


def test_archive_and_folder_agree_and_layout_is_chw(tmp_path):
    def pattern(name, batch):
        if name == 'data_batch_1':
            batch[b'data'][0, :1024], batch[b'data'][0, 1024:2048], batch[b'data'][0, 2048:] = 10, 20, 30
            batch[b'data'][0, 5 * 32 + 7] = 200  # red plane, row 5, column 7
        return batch

    archive = write_archive(tmp_path / 'c.tar.gz', 8, 10, mutate=pattern)
    from_tar = di.load_cifar10(archive)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / 'x')
    for folder in (tmp_path / 'x', tmp_path / 'x' / 'cifar-10-batches-py'):
        for a, b in zip(from_tar, di.load_cifar10(folder)):
            np.testing.assert_array_equal(a, b)
    train_x, train_y, test_x, test_y = from_tar
    assert train_x.shape == (40, 3, 32, 32) and train_x.dtype == np.uint8
    assert test_x.shape == (10, 3, 32, 32) and test_y.dtype == np.int32 and train_y.dtype == np.int32
    np.testing.assert_array_equal(train_y, np.arange(40) % 10)  # batches concatenated in order 1..5
    np.testing.assert_array_equal(test_y, np.arange(10) % 10)
    assert train_x[0, 0, 5, 7] == 200 and (train_x[0, 0] == 10).sum() == 1023
    assert (train_x[0, 1] == 20).all() and (train_x[0, 2] == 30).all()



MALFORMED = [
    ('missing', lambda name, b: None if name == 'data_batch_3' else b,
     'missing batch cifar-10-batches-py/data_batch_3'),
    ('columns', replace_entry('data_batch_2', b'data', lambda d: d[:, :3000]), 'shape (n, 3072)'),
    ('dtype', replace_entry('test_batch', b'data', lambda d: d.astype(np.int64)), 'uint8'),
    ('label10', replace_entry('data_batch_4', b'labels', lambda v: v[:2] + [10] + v[3:]), 'label 10 is outside 0..9'),
    ('label-1', replace_entry('test_batch', b'labels', lambda v: [-1] + v[1:]), 'label -1 is outside 0..9'),
    ('float labels', replace_entry('test_batch', b'labels', lambda v: [0.5] * len(v)), 'labels must be integers'),
    ('count', replace_entry('data_batch_1', b'labels', lambda v: v[:-1]), '7 labels for 8 images'),
    ('empty', lambda name, b: pickle.dumps({b'data': np.zeros((0, 3072), np.uint8), b'labels': []}, protocol=4),
     'no images'),  # protocol 2 would pickle the empty buffer as a bytes() call, refused as such
    ('no labels', lambda name, b: {b'data': b[b'data']}, "no 'labels' entry"),
    ('not dict', lambda name, b: pickle.dumps([1, 2, 3], protocol=2), 'expected a dict, found list'),
    ('garbage', lambda name, b: b'this is not a pickle', 'cannot unpickle'),
]


@pytest.mark.parametrize('mutate, expected', [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_batches_are_refused(tmp_path, mutate, expected):
    archive = write_archive(tmp_path / 'c.tar.gz', 8, 10, mutate=mutate)
    with pytest.raises(UserError, match='c.tar.gz') as error:
        di.load_cifar10(archive)
    assert expected in str(error.value) and '\n' not in str(error.value)


def test_truncated_and_non_archives_are_refused(tmp_path, cifar_archive):
    data = cifar_archive.read_bytes()
    cut = tmp_path / 'cut.tar.gz'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match='truncated'):
        di.load_cifar10(cut)
    text = tmp_path / 'notes.txt'
    text.write_text('hello')
    with pytest.raises(UserError, match='not a tar.gz'):
        di.load_cifar10(text)


def test_missing_path_and_empty_folder_are_refused(tmp_path):
    with pytest.raises(UserError, match='does not exist'):
        di.load_cifar10(tmp_path / 'nowhere.tar.gz')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(UserError, match='missing batch data_batch_1'):
        di.load_cifar10(tmp_path / 'empty')


class _Evil:
    """Pickles into a call of `function(argument)`, like a malicious batch would."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


@pytest.mark.parametrize('how', ['system', 'exec'])
def test_restricted_unpickler_refuses_code(tmp_path, how):
    marker = tmp_path / 'MARKER'
    payload = (_Evil(os.system, 'touch %s' % marker) if how == 'system'
               else _Evil(exec, 'open(%r, "w").close()' % str(marker)))
    evil = lambda name, b: {**b, b'labels': payload} if name == 'data_batch_2' else b  # noqa: E731
    archive = write_archive(tmp_path / 'c.tar.gz', 8, 10, mutate=evil)
    refused = r'refusing to load .*data_batch_2: it asks for (posix\.system|__builtin__\.exec)'
    with pytest.raises(UserError, match=refused):
        di.load_cifar10(archive)
    assert not marker.exists()


# ---------------------------------------------------------------- md5 and download


def test_md5_of_existing_archive(tmp_path, monkeypatch):
    home = tmp_path / 'home'
    home.mkdir()
    monkeypatch.setattr(di, 'get_data_home', lambda: str(home))
    target = home / 'cifar-10-python.tar.gz'
    write_archive(target, 8, 10)
    true_md5 = _md5(target)
    assert di.load_cifar10(md5=true_md5)[0].shape == (40, 3, 32, 32)
    with pytest.raises(UserError, match='expected %s.*removed' % di.CIFAR10_MD5) as error:
        di.load_cifar10()
    assert true_md5 in str(error.value) and not target.exists()


def test_download(tmp_path, monkeypatch):
    home = tmp_path / 'home'
    home.mkdir()
    source = write_archive(tmp_path / 'served.tar.gz', 8, 10)
    calls = []

    def fake_download(url, output_file=None, open_file=True):
        calls.append(url)
        with open(output_file, 'wb') as f:
            f.write(source.read_bytes())

    monkeypatch.setattr(di, 'get_data_home', lambda: str(home))
    monkeypatch.setattr(di, 'download', fake_download)
    with pytest.raises(UserError, match='removed'):
        di.load_cifar10()  # the official md5 does not match the tiny archive
    assert os.listdir(home) == []
    loaded = di.load_cifar10(url='http://example/c.tgz', md5=_md5(source))
    assert calls == [di.CIFAR10_URL, 'http://example/c.tgz'] and loaded[2].shape == (10, 3, 32, 32)
    assert os.listdir(home) == ['cifar-10-python.tar.gz']
    di.load_cifar10(md5=_md5(source))  # present now: no second download
    assert len(calls) == 2


def test_download_failure_is_one_line_user_error(tmp_path, monkeypatch):
    def offline(url, output_file=None, open_file=True):
        raise urllib.error.URLError('no network')

    monkeypatch.setattr(di, 'get_data_home', lambda: str(tmp_path))
    monkeypatch.setattr(di, 'download', offline)
    with pytest.raises(UserError, match=r'cannot download CIFAR-10 from .*\(no network\).*--dataset-path'):
        di.load_cifar10()
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- samples and augmentation


def _draws(seed, stream, epoch, n):
    """The random numbers the module is specified to draw for one data epoch."""
    rng = np.random.RandomState([seed, stream, epoch])
    order = rng.permutation(n)
    dy, dx, flip = rng.randint(0, 9, n), rng.randint(0, 9, n), rng.randint(0, 2, n)
    return order, dy, dx, flip, rng.randint(0, 32, n), rng.randint(0, 32, n)


def test_normalisation_uses_mean_and_std():
    images, labels = _indexed_images(3)
    images[1, :, 4, 9] = (128, 0, 255)
    source = di.CifarSource(images, labels, seed=0, shuffle=False, augment=False)
    source.reset()
    source.next()
    x, y = source.next()
    assert x.dtype == np.float32 and x.shape == (3, 32, 32) and y.dtype == np.int32 and y.shape == (1,)
    expected = [(128 / 255 - 0.4914) / 0.2470, (0 - 0.4822) / 0.2435, (1 - 0.4465) / 0.2616]
    np.testing.assert_allclose(x[:, 4, 9], expected, rtol=1e-5)
    assert y[0] == 1


def test_augmentation_is_per_image_and_matches_reference():
    n, seed, stream = 12, 5, 2
    images, labels = _indexed_images(n, seed=1)
    x, y = _take(di.make_iterator(images, labels, n, seed, stream=stream), 1)[0]
    order, dy, dx, flip, _, _ = _draws(seed, stream, 0, n)
    assert len(set(zip(dy, dx, flip))) > n // 2 and 0 < flip.sum() < n
    for p in range(n):
        crop = np.pad(images[order[p]], ((0, 0), (4, 4), (4, 4)))[:, dy[p]:dy[p] + 32, dx[p]:dx[p] + 32]
        expected = _normalise(crop[:, :, ::-1] if flip[p] else crop)
        np.testing.assert_allclose(x[p], expected, atol=1e-5)
        assert y[p, 0] == labels[order[p]]


def test_copies_of_one_image_get_different_augmentations():
    image = np.random.RandomState(3).randint(0, 256, (1, 3, 32, 32)).astype(np.uint8)
    images, labels = np.repeat(image, 8, axis=0), np.zeros(8, np.int32)
    plain = _take(di.make_iterator(images, labels, 8, seed=0, augment=False), 1)[0][0]
    augmented = _take(di.make_iterator(images, labels, 8, seed=0), 1)[0][0]
    assert all(np.array_equal(plain[0], row) for row in plain)
    assert len({row.tobytes() for row in augmented}) >= 6  # 8 draws among 162 crop/flip pairs may collide


def test_cutout_zeroes_one_clipped_square_per_image():
    n, seed, size = 24, 7, 16
    images, labels = np.full((n, 3, 32, 32), 200, np.uint8), np.zeros(n, np.int32)
    x = _take(di.make_iterator(images, labels, n, seed, cutout=size), 1)[0][0]
    _, _, _, _, cy, cx = _draws(seed, 0, 0, n)
    interior, masks = 0, set()
    for p in range(n):
        zero = x[p] == 0
        assert (zero == zero[0]).all()  # same square in every channel
        rows, cols = np.nonzero(zero[0])
        y0, y1 = np.clip([cy[p] - size // 2, cy[p] + size // 2], 0, 32)
        x0, x1 = np.clip([cx[p] - size // 2, cx[p] + size // 2], 0, 32)
        expected = np.zeros((32, 32), bool)
        expected[y0:y1, x0:x1] = True
        np.testing.assert_array_equal(zero[0], expected)
        assert rows.max() - rows.min() < size and cols.max() - cols.min() < size
        interior += zero[0].sum() == size * size
        masks.add(zero[0].tobytes())
    assert interior > 0 and len(masks) > n // 2


# ---------------------------------------------------------------- iterators


def test_resumed_iterator_continues_the_same_stream():
    n, batch = 10, 4  # 10 is not a multiple of 4: batches straddle data epochs
    images, labels = _indexed_images(n)  # labels are the indices here, so y shows the order

    def make(seed, start=0):
        return di.make_iterator(images, labels, batch, seed, cutout=8, start=start)

    reference = _take(make(3), 9)
    order = np.concatenate([y[:, 0] for _, y in reference])
    assert sorted(order[:n]) == sorted(order[n:2 * n]) == list(range(n))  # each pass is a permutation
    assert not np.array_equal(order[:n], order[n:2 * n])  # ... reshuffled every pass
    for k in (1, 2, 5):  # start 4: mid-pass; 8: first batch straddles passes 0-1; 20: start of pass 2
        resumed = _take(make(3, start=k * batch), 4)
        for (xa, ya), (xb, yb) in zip(resumed, reference[k:k + 4]):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    same, other = _take(make(3), 3), _take(make(4), 3)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(same, reference))
    assert not np.array_equal(np.concatenate([y[:, 0] for _, y in other]), order[:3 * batch])


def test_search_halves_are_disjoint():
    images, labels = _indexed_images(11)
    (xa, ya), (xb, yb) = di.search_halves(images, labels)
    a, b = set(xa[:, 0, 0, 0]), set(xb[:, 0, 0, 0])
    assert len(xa) == len(xb) == len(ya) == len(yb) == 5 and not a & b and len(a | b) == 10
    np.testing.assert_array_equal(np.concatenate([ya, yb]), labels[:10])


@pytest.mark.parametrize('batch_size', [1, 4, 5, 7, 25, 40])
def test_eval_batches_cover_each_image_once(batch_size):
    n = 25
    images, labels = _indexed_images(n)
    seen, total = [], 0
    for x, y, n_valid in di.eval_batches(images, labels, batch_size):
        assert x.shape == (batch_size, 3, 32, 32) and y.shape == (batch_size, 1)
        seen.extend(_decode_index(x[:n_valid]))
        np.testing.assert_array_equal(y[:n_valid, 0], labels[seen[-n_valid:]])
        total += n_valid
    assert seen == list(range(n)) and total == n
