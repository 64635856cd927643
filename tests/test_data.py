"""Tests of data_iterator: loading and validating CIFAR-10, augmentation, resumable iterators."""
import hashlib
import os
import pickle
import subprocess
import tarfile
import urllib.error

import numpy as np
import pytest

import data_iterator as di
from errors import UserError
from helpers import Evil, replace_entry, truncated_archive, write_archive


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
    ('missing test batch', lambda name, b: None if name == 'test_batch' else b,
     'missing batch cifar-10-batches-py/test_batch'),
    ('columns', replace_entry('data_batch_2', b'data', lambda d: d[:, :3000]), 'shape (n, 3072)'),
    ('images', replace_entry('test_batch', b'data', lambda d: d.reshape(-1, 3, 32, 32)), 'shape (n, 3072)'),
    ('dtype', replace_entry('test_batch', b'data', lambda d: d.astype(np.int64)), 'uint8'),
    ('float32', replace_entry('data_batch_1', b'data', lambda d: d.astype(np.float32)), 'uint8'),
    ('label10', replace_entry('data_batch_4', b'labels', lambda v: v[:2] + [10] + v[3:]),
     'data_batch_4: label 10 is outside 0..9'),
    ('label-1', replace_entry('test_batch', b'labels', lambda v: [-1] + v[1:]), 'test_batch: label -1 is outside 0..9'),
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


def test_truncated_and_non_archives_are_refused(tmp_path):
    with pytest.raises(UserError, match='truncated'):
        di.load_cifar10(truncated_archive(tmp_path / 'cut.tar.gz'))
    text = tmp_path / 'notes.txt'
    text.write_text('hello')
    empty = tmp_path / 'empty.tar.gz'
    empty.write_bytes(b'')
    for path in (text, empty):
        with pytest.raises(UserError, match='not a tar.gz'):
            di.load_cifar10(path)


def test_missing_path_and_empty_folders_are_refused(tmp_path):
    with pytest.raises(UserError, match='does not exist'):
        di.load_cifar10(tmp_path / 'nowhere.tar.gz')
    (tmp_path / 'empty' / 'cifar-10-batches-py').mkdir(parents=True)
    for folder in (tmp_path / 'empty', tmp_path / 'empty' / 'cifar-10-batches-py'):
        with pytest.raises(UserError, match='missing batch data_batch_1'):
            di.load_cifar10(folder)


def _folder_with(tmp_path, batch_bytes):
    """An extracted tiny archive whose data_batch_1 holds ``batch_bytes``."""
    with tarfile.open(write_archive(tmp_path / 'c.tar.gz', 8, 10)) as tar:
        tar.extractall(tmp_path / 'x')
    (tmp_path / 'x' / 'cifar-10-batches-py' / 'data_batch_1').write_bytes(batch_bytes)
    return tmp_path / 'x'


def test_a_batch_in_a_folder_that_is_not_a_pickle_is_refused(tmp_path):
    with pytest.raises(UserError, match='cannot unpickle .*data_batch_1'):
        di.load_cifar10(_folder_with(tmp_path, b'\x80\x02garbage'))


def _payload(how, marker):
    """A pickled object that runs code creating ``marker`` when unpickled, and the call it asks for."""
    return {
        'system': (Evil(os.system, 'touch %s' % marker), r'posix\.system'),
        'exec': (Evil(exec, 'open(%r, "w").close()' % str(marker)), r'__builtin__\.exec'),
        'eval': (Evil(eval, '__import__("os").system("touch %s")' % marker), r'__builtin__\.eval'),
        'subprocess': (Evil(subprocess.call, ['touch', str(marker)]), r'commands\.call'),  # protocol 2's name
    }[how]


@pytest.mark.parametrize('how', ['system', 'exec', 'eval', 'subprocess'])
def test_the_crafted_pickles_do_run_code_when_unpickled_naively(how, tmp_path):
    """The payloads are live: plain pickle.loads runs them (so their refusal means something)."""
    marker = tmp_path / 'MARKER'
    pickle.loads(pickle.dumps({b'labels': _payload(how, marker)[0]}, protocol=2))
    assert marker.exists()


@pytest.mark.parametrize('how', ['system', 'exec', 'eval', 'subprocess'])
def test_restricted_unpickler_refuses_code(tmp_path, how):
    marker = tmp_path / 'MARKER'
    payload, call = _payload(how, marker)
    evil = lambda name, b: {**b, b'labels': payload} if name == 'data_batch_2' else b  # noqa: E731
    archive = write_archive(tmp_path / 'c.tar.gz', 8, 10, mutate=evil)
    with pytest.raises(UserError, match=r'refusing to load .*data_batch_2: it asks for ' + call):
        di.load_cifar10(archive)
    assert not marker.exists()


def test_restricted_unpickler_refuses_code_in_a_folder(tmp_path):
    marker = tmp_path / 'MARKER'
    folder = _folder_with(tmp_path, pickle.dumps(_payload('system', marker)[0], protocol=2))
    with pytest.raises(UserError, match=r'refusing to load .*data_batch_1: it asks for posix\.system'):
        di.load_cifar10(folder)
    assert not marker.exists()


def test_what_is_not_a_regular_file_or_a_folder_is_refused_before_it_is_read(tmp_path):
    """A device would fill the memory and a named pipe hang the job: neither is opened (the
    pipe has no writer, so opening it would block; the command-line case is in test_train_cli)."""
    fifo = tmp_path / 'pipe'
    os.mkfifo(str(fifo))
    for path in ('/dev/zero', str(fifo)):
        with pytest.raises(UserError) as error:
            di.load_cifar10(path)
        assert str(error.value) == 'cannot read dataset {}: it is not a regular file or a folder'.format(path)
    huge = tmp_path / 'huge.tar.gz'
    with open(str(huge), 'wb') as f:
        f.truncate(di.MAX_ARCHIVE + 1)  # sparse: no disk space used
    with pytest.raises(UserError, match=r'cannot read dataset .*huge\.tar\.gz: it is \d+ MB, larger than'):
        di.load_cifar10(huge)


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


def _which_crop(x, image):
    """The (dy, dx, flip) for which ``x`` is ``image`` (uint8 CHW), padded with 4 zero pixels,
    cropped at (dy, dx), flipped left-right if ``flip``, normalised; asserts there is one."""
    padded = np.pad(image, ((0, 0), (4, 4), (4, 4)))
    for dy in range(9):
        for dx in range(9):
            crop = padded[:, dy:dy + 32, dx:dx + 32]
            for flip in (False, True):
                if np.allclose(x, _normalise(crop[:, :, ::-1] if flip else crop), atol=1e-5):
                    return dy, dx, flip
    raise AssertionError('the sample is no padded crop of its image, flipped or not')


def _samples(images, labels, batch_size, batches, **kwargs):
    """The first ``batches * batch_size`` samples of an iterator, concatenated: (x, labels)."""
    taken = _take(di.make_iterator(images, labels, batch_size, **kwargs), batches)
    return np.concatenate([x for x, _ in taken]), np.concatenate([y[:, 0] for _, y in taken])


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


def test_augmentation_is_a_random_crop_and_flip_of_each_image():
    n = 12
    images = np.random.RandomState(1).randint(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    x, order = _samples(images, np.arange(n), n, 1, seed=5, stream=2)
    assert sorted(order) == list(range(n)) and list(order) != list(range(n))  # the labels: a shuffled pass
    crops = [_which_crop(x[p], images[order[p]]) for p in range(n)]
    assert len(set(crops)) > n // 2 and 0 < sum(flip for _, _, flip in crops) < n


def test_samples_depend_only_on_the_seed_the_stream_and_their_index():
    """Not on the batch size, and the flags never shift the random numbers a sample receives:
    with or without cutout the same crops, with or without shuffling or cropping the same squares."""
    n = 10
    images = np.random.RandomState(2).randint(1, 256, (n, 3, 32, 32)).astype(np.uint8)
    labels = np.arange(n)
    x, y = _samples(images, labels, 4, 5, seed=3, cutout=16)
    x5, y5 = _samples(images, labels, 5, 4, seed=3, cutout=16)
    np.testing.assert_array_equal(x, x5)
    np.testing.assert_array_equal(y, y5)
    for other in (dict(seed=4), dict(seed=3, stream=1)):
        xo, yo = _samples(images, labels, 4, 5, cutout=16, **other)
        assert not np.array_equal(yo, y) and not np.array_equal(xo, x), other
    square = (x == 0).all(axis=1)  # the cutout of each sample (no normalised pixel is exactly 0)
    assert square.any(axis=(1, 2)).all()
    plain, y_plain = _samples(images, labels, 4, 5, seed=3)
    np.testing.assert_array_equal(y_plain, y)
    np.testing.assert_array_equal((plain == 0).all(axis=1), np.zeros_like(square))
    np.testing.assert_array_equal(np.where(square[:, None], 0, plain), x)  # the same crops, then the squares
    uncropped, y_uncropped = _samples(images, labels, 4, 5, seed=3, cutout=16, augment=False)
    np.testing.assert_array_equal(y_uncropped, y)
    np.testing.assert_array_equal((uncropped == 0).all(axis=1), square)
    in_order, y_in_order = _samples(images, labels, 4, 5, seed=3, cutout=16, shuffle=False)
    np.testing.assert_array_equal(y_in_order, np.arange(20) % n)
    np.testing.assert_array_equal((in_order == 0).all(axis=1), square)


def test_copies_of_one_image_get_different_augmentations():
    image = np.random.RandomState(3).randint(0, 256, (1, 3, 32, 32)).astype(np.uint8)
    images, labels = np.repeat(image, 8, axis=0), np.zeros(8, np.int32)
    plain = _take(di.make_iterator(images, labels, 8, seed=0, augment=False), 1)[0][0]
    augmented = _take(di.make_iterator(images, labels, 8, seed=0), 1)[0][0]
    assert all(np.array_equal(plain[0], row) for row in plain)
    assert len({row.tobytes() for row in augmented}) >= 6  # 8 draws among 162 crop/flip pairs may collide


def test_cutout_zeroes_one_clipped_square_per_image():
    n, size = 24, 16
    images, labels = np.full((n, 3, 32, 32), 200, np.uint8), np.zeros(n, np.int32)
    x = _take(di.make_iterator(images, labels, n, 7, cutout=size), 1)[0][0]
    interior, masks = 0, set()
    for p in range(n):
        zero = x[p] == 0
        assert (zero == zero[0]).all()  # same square in every channel
        rows, cols = np.nonzero(zero[0])
        assert rows.size > 0  # its centre is always inside the image
        expected = np.zeros((32, 32), bool)
        expected[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
        np.testing.assert_array_equal(zero[0], expected)  # a rectangle ...
        for lo, hi in ((rows.min(), rows.max() + 1), (cols.min(), cols.max() + 1)):
            # ... of side `size` around a centre c in 0..31: [c - size/2, c + size/2) clipped to the image
            assert hi - lo == size or (lo == 0 and size // 2 <= hi < size) or \
                (hi == 32 and 32 - size < lo <= 32 - size // 2), (p, lo, hi)
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
