"""Tests of the archives (datasets.py: CIFAR-10, CIFAR-100, SVHN, downloads) and of the streams
(data_iterator.py: augmentation, exact resume, mpirun rows, test batches)."""
import hashlib
import os
import pickle
import shutil
import subprocess
import tarfile
import urllib.error

import numpy as np
import pytest

import data_iterator as di
import datasets
from errors import UserError
from helpers import (CIFAR_MEAN, CIFAR_STD, Evil, cifar_recipe, replace_entry, truncated_archive, write_archive,
                     write_cifar100, write_svhn)


def load(path=None, name='cifar10'):
    """(train images, train labels, test images, test labels) of an archive (None: the download)."""
    data = datasets.load(name, None if path is None else str(path))
    return data.train.images, data.train.labels, data.test.images, data.test.labels


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
    return np.rint((x[:, 0, 0, 0] * CIFAR_STD[0] + CIFAR_MEAN[0]) * 255).astype(int)


def _normalise(image):
    """Reference normalisation of a uint8 CHW image, written independently of the module."""
    mean, std = np.array(CIFAR_MEAN).reshape(3, 1, 1), np.array(CIFAR_STD).reshape(3, 1, 1)
    return (image / 255.0 - mean) / std


# ---------------------------------------------------------------- loading


def test_archive_and_folder_agree_and_layout_is_chw(tmp_path):
    def pattern(name, batch):
        if name == 'data_batch_1':
            batch[b'data'][0, :1024], batch[b'data'][0, 1024:2048], batch[b'data'][0, 2048:] = 10, 20, 30
            batch[b'data'][0, 5 * 32 + 7] = 200  # red plane, row 5, column 7
        return batch

    archive = write_archive(tmp_path / 'c.tar.gz', 8, 10, mutate=pattern)
    from_tar = load(archive)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / 'x')
    for folder in (tmp_path / 'x', tmp_path / 'x' / 'cifar-10-batches-py'):
        for a, b in zip(from_tar, load(folder)):
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
        load(archive)
    assert expected in str(error.value) and '\n' not in str(error.value)


def test_truncated_and_non_archives_are_refused(tmp_path):
    with pytest.raises(UserError, match='truncated'):
        load(truncated_archive(tmp_path / 'cut.tar.gz'))
    text = tmp_path / 'notes.txt'
    text.write_text('hello')
    empty = tmp_path / 'empty.tar.gz'
    empty.write_bytes(b'')
    for path in (text, empty):
        with pytest.raises(UserError, match='not a tar.gz'):
            load(path)


def test_missing_path_and_empty_folders_are_refused(tmp_path):
    with pytest.raises(UserError, match='does not exist'):
        load(tmp_path / 'nowhere.tar.gz')
    (tmp_path / 'empty' / 'cifar-10-batches-py').mkdir(parents=True)
    for folder in (tmp_path / 'empty', tmp_path / 'empty' / 'cifar-10-batches-py'):
        with pytest.raises(UserError, match='missing batch data_batch_1'):
            load(folder)


def _folder_with(tmp_path, batch_bytes):
    """An extracted tiny archive whose data_batch_1 holds ``batch_bytes``."""
    with tarfile.open(write_archive(tmp_path / 'c.tar.gz', 8, 10)) as tar:
        tar.extractall(tmp_path / 'x')
    (tmp_path / 'x' / 'cifar-10-batches-py' / 'data_batch_1').write_bytes(batch_bytes)
    return tmp_path / 'x'


def test_a_batch_in_a_folder_that_is_not_a_pickle_is_refused(tmp_path):
    with pytest.raises(UserError, match='cannot unpickle .*data_batch_1'):
        load(_folder_with(tmp_path, b'\x80\x02garbage'))


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
        load(archive)
    assert not marker.exists()


def test_restricted_unpickler_refuses_code_in_a_folder(tmp_path):
    marker = tmp_path / 'MARKER'
    folder = _folder_with(tmp_path, pickle.dumps(_payload('system', marker)[0], protocol=2))
    with pytest.raises(UserError, match=r'refusing to load .*data_batch_1: it asks for posix\.system'):
        load(folder)
    assert not marker.exists()


def test_what_is_not_a_regular_file_or_a_folder_is_refused_before_it_is_read(tmp_path):
    """A device would fill the memory and a named pipe hang the job: neither is opened (the
    pipe has no writer, so opening it would block; the command-line case is in test_train_cli)."""
    fifo = tmp_path / 'pipe'
    os.mkfifo(str(fifo))
    for path in ('/dev/zero', str(fifo)):
        with pytest.raises(UserError) as error:
            load(path)
        assert str(error.value) == 'cannot read dataset {}: it is not a regular file or a folder'.format(path)
    huge = tmp_path / 'huge.tar.gz'
    with open(str(huge), 'wb') as f:
        f.truncate(datasets.MAX_ARCHIVE + 1)  # sparse: no disk space used
    with pytest.raises(UserError, match=r'cannot read dataset .*huge\.tar\.gz: it is \d+ MB, larger than'):
        load(huge)


# ---------------------------------------------------------------- md5 and download


def with_md5(monkeypatch, name, md5):
    """Make ``md5`` the official checksum of dataset ``name``'s (first) download."""
    spec = datasets.SPECS[name]
    downloads = (spec.downloads[0]._replace(md5=md5),) + spec.downloads[1:]
    monkeypatch.setitem(datasets.SPECS, name, spec._replace(downloads=downloads))


def test_md5_of_existing_archive(tmp_path, monkeypatch):
    home = tmp_path / 'home'
    home.mkdir()
    monkeypatch.setattr(datasets, 'get_data_home', lambda: str(home))
    target = home / 'cifar-10-python.tar.gz'
    write_archive(target, 8, 10)
    true_md5 = _md5(target)
    official = datasets.SPECS['cifar10'].downloads[0].md5
    with monkeypatch.context() as patched:
        with_md5(patched, 'cifar10', true_md5)
        assert load()[0].shape == (40, 3, 32, 32)
    with pytest.raises(UserError, match='expected %s.*removed' % official) as error:
        load()
    assert official == 'c58f30108f718f92721af3b95e74349a'
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

    monkeypatch.setattr(datasets, 'get_data_home', lambda: str(home))
    monkeypatch.setattr(datasets, 'download', fake_download)
    with pytest.raises(UserError, match='removed'):
        load()  # the official md5 does not match the tiny archive
    assert os.listdir(home) == []
    with_md5(monkeypatch, 'cifar10', _md5(source))
    monkeypatch.setenv(datasets.DOWNLOAD_URL_VARIABLE, 'http://example/data/')
    loaded = load()
    assert calls == ['https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz',
                     'http://example/data/cifar-10-python.tar.gz'] and loaded[2].shape == (10, 3, 32, 32)
    assert os.listdir(home) == ['cifar-10-python.tar.gz']
    load()  # present now: no second download
    assert len(calls) == 2


def test_download_failure_is_one_line_user_error(tmp_path, monkeypatch):
    def offline(url, output_file=None, open_file=True):
        raise urllib.error.URLError('no network')

    monkeypatch.setattr(datasets, 'get_data_home', lambda: str(tmp_path))
    monkeypatch.setattr(datasets, 'download', offline)
    for name, title in (('cifar10', 'CIFAR-10'), ('cifar100', 'CIFAR-100'), ('svhn', 'SVHN')):
        with pytest.raises(UserError, match=r'cannot download {} from .*\(no network\).*--dataset-path'.format(title)):
            load(name=name)
    assert os.listdir(tmp_path) in ([], ['svhn'])
    assert not os.listdir(tmp_path / 'svhn')


def test_svhn_downloads_both_files_into_a_folder_of_its_own(tmp_path, monkeypatch):
    served = write_svhn(tmp_path / 'served', 6, 4)
    monkeypatch.setattr(datasets, 'get_data_home', lambda: str(tmp_path / 'home'))
    monkeypatch.setattr(datasets, 'download', lambda url, output_file=None, open_file=True: shutil.copy(
        str(served / url.rsplit('/', 1)[1]), output_file))
    spec = datasets.SPECS['svhn']
    monkeypatch.setitem(datasets.SPECS, 'svhn', spec._replace(downloads=tuple(
        d._replace(md5=_md5(served / d.name)) for d in spec.downloads)))
    train_x, train_y, test_x, _ = load(name='svhn')
    assert sorted(os.listdir(tmp_path / 'home' / 'svhn')) == ['test_32x32.mat', 'train_32x32.mat']
    assert train_x.shape == (6, 3, 32, 32) and test_x.shape == (4, 3, 32, 32)
    assert [d.md5 for d in spec.downloads] == ['e26dedcc434d2e4c54c9b2d4a06d8373', 'eb5a983be6a315427106f1b164d9cef3']


# ---------------------------------------------------------------- CIFAR-100 and SVHN


def test_cifar100_reads_the_fine_labels_of_the_official_layout(tmp_path):
    archive = write_cifar100(tmp_path / 'cifar-100-python.tar.gz', 30, 12)
    train_x, train_y, test_x, test_y = load(archive, 'cifar100')
    with tarfile.open(archive) as tar:
        train = pickle.load(tar.extractfile('cifar-100-python/train'), encoding='bytes')
        tar.extractall(tmp_path / 'x')
    assert train_x.shape == (30, 3, 32, 32) and test_x.shape == (12, 3, 32, 32)
    np.testing.assert_array_equal(train_y, train[b'fine_labels'])
    assert not np.array_equal(train_y, train[b'coarse_labels'])
    np.testing.assert_array_equal(train_x.reshape(30, -1), train[b'data'])
    assert sorted(set(train_y)) == list(range(30)) and max(test_y) < 100  # fine labels reach beyond 19
    for a, b in zip(load(archive, 'cifar100'), load(tmp_path / 'x', 'cifar100')):
        np.testing.assert_array_equal(a, b)
    assert datasets.class_count('cifar100', None) == 100


def test_cifar100_is_refused_like_cifar10(tmp_path):
    def mutate(name, batch):
        if name == 'train':
            batch[b'fine_labels'][3] = 100
        return batch
    with pytest.raises(UserError, match=r'cifar-100-python/train: label 100 is outside 0..99'):
        load(write_cifar100(tmp_path / 'bad.tar.gz', 8, 4, mutate=mutate), 'cifar100')
    marker = tmp_path / 'MARKER'
    evil = lambda name, b: {**b, b'fine_labels': _payload('system', marker)[0]} if name == 'test' else b  # noqa
    with pytest.raises(UserError, match=r'refusing to load .*test: it asks for posix\.system, which a CIFAR-100 batch'):
        load(write_cifar100(tmp_path / 'evil.tar.gz', 8, 4, mutate=evil), 'cifar100')
    assert not marker.exists()
    with pytest.raises(UserError, match='missing batch cifar-100-python/test'):
        load(write_cifar100(tmp_path / 'short.tar.gz', 8, 4, mutate=lambda name, b: None if name == 'test' else b),
             'cifar100')
    with pytest.raises(UserError, match='missing batch cifar-100-python/train'):
        load(write_archive(tmp_path / 'cifar10.tar.gz', 8, 4), 'cifar100')  # a CIFAR-10 archive


def test_svhn_mat_files_give_chw_images_and_digit_labels(tmp_path):
    folder = write_svhn(tmp_path / 'svhn', 7, 5)
    from scipy.io import loadmat
    raw = loadmat(str(folder / 'train_32x32.mat'))
    train_x, train_y, test_x, test_y = load(folder, 'svhn')
    assert train_x.shape == (7, 3, 32, 32) and train_x.dtype == np.uint8 and test_x.shape == (5, 3, 32, 32)
    # pixel (row 3, column 5, green) of image 2 is X[3, 5, 1, 2] in the file
    assert train_x[2, 1, 3, 5] == raw['X'][3, 5, 1, 2]
    np.testing.assert_array_equal(train_y, raw['y'][:, 0] % 10)
    assert 10 in raw['y'] and 0 in train_y and train_y.max() <= 9  # label 10 is the digit 0


@pytest.mark.parametrize('case, expected', [
    ('missing', 'test_32x32.mat: it does not exist'),
    ('not mat', 'not a MATLAB file of SVHN'),
    ('no X', "no 'X' array"),
    ('label 0', 'label 0 is outside 1..10'),
    ('label 11', 'label 11 is outside 1..10'),
    ('shape', 'X must be a uint8 array of shape (32, 32, 3, n)'),
])
def test_svhn_damaged_files_are_refused(tmp_path, case, expected):
    from scipy.io import savemat
    folder = write_svhn(tmp_path / 'svhn', 6, 4)
    test = folder / 'test_32x32.mat'
    x = np.zeros((32, 32, 3, 4), np.uint8)
    {'missing': lambda: test.unlink(),
     'not mat': lambda: test.write_bytes(b'not a matlab file at all' * 10),
     'no X': lambda: savemat(str(test), {'y': np.ones((4, 1))}),
     'label 0': lambda: savemat(str(test), {'X': x, 'y': np.zeros((4, 1), np.uint8)}),
     'label 11': lambda: savemat(str(test), {'X': x, 'y': np.full((4, 1), 11, np.uint8)}),
     'shape': lambda: savemat(str(test), {'X': np.zeros((28, 28, 3, 4), np.uint8), 'y': np.ones((4, 1))}),
     }[case]()
    with pytest.raises(UserError) as error:
        load(folder, 'svhn')
    assert expected in str(error.value) and '\n' not in str(error.value)


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


def _iterator(images, labels, batch_size, seed=0, stream=0, shuffle=True, augment=True, cutout=0, start=0, **where):
    """The training batches of a stream over ``images`` with the CIFAR recipe (``where``: rank, size,
    pool of the Stream)."""
    split = datasets.Split(labels, images)
    return di.Batches(di.Stream(split, cifar_recipe(augment, cutout), seed, stream, batch_size, start=start,
                                shuffle=shuffle, **where))


def _samples(images, labels, batch_size, batches, **kwargs):
    """The first ``batches * batch_size`` samples of an iterator, concatenated: (x, labels)."""
    taken = _take(_iterator(images, labels, batch_size, **kwargs), batches)
    return np.concatenate([x for x, _ in taken]), np.concatenate([y[:, 0] for _, y in taken])


def test_normalisation_uses_mean_and_std():
    images, labels = _indexed_images(3)
    images[1, :, 4, 9] = (128, 0, 255)
    source = di.Stream(datasets.Split(labels, images), cifar_recipe(augment=False), seed=0, shuffle=False)
    x, y = source.sample(1)
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
    with or without cutout the same crops, with or without shuffling the same squares."""
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
    in_order, y_in_order = _samples(images, labels, 4, 5, seed=3, cutout=16, shuffle=False)
    np.testing.assert_array_equal(y_in_order, np.arange(20) % n)
    np.testing.assert_array_equal((in_order == 0).all(axis=1), square)


def test_copies_of_one_image_get_different_augmentations():
    image = np.random.RandomState(3).randint(0, 256, (1, 3, 32, 32)).astype(np.uint8)
    images, labels = np.repeat(image, 8, axis=0), np.zeros(8, np.int32)
    plain = _take(_iterator(images, labels, 8, seed=0, augment=False), 1)[0][0]
    augmented = _take(_iterator(images, labels, 8, seed=0), 1)[0][0]
    assert all(np.array_equal(plain[0], row) for row in plain)
    assert len({row.tobytes() for row in augmented}) >= 6  # 8 draws among 162 crop/flip pairs may collide


def test_cutout_zeroes_one_clipped_square_per_image():
    n, size = 24, 16
    images, labels = np.full((n, 3, 32, 32), 200, np.uint8), np.zeros(n, np.int32)
    x = _take(_iterator(images, labels, n, 7, cutout=size), 1)[0][0]
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
        return _iterator(images, labels, batch, seed, cutout=8, start=start)

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
    a_half, b_half = datasets.Split(labels, images).halves()
    (xa, ya), (xb, yb) = (a_half.images, a_half.labels), (b_half.images, b_half.labels)
    a, b = set(xa[:, 0, 0, 0]), set(xb[:, 0, 0, 0])
    assert len(xa) == len(xb) == len(ya) == len(yb) == 5 and not a & b and len(a | b) == 10
    np.testing.assert_array_equal(np.concatenate([ya, yb]), labels[:10])


@pytest.mark.parametrize('batch_size', [1, 4, 5, 7, 25, 40])
def test_eval_batches_cover_each_image_once(batch_size):
    n = 25
    images, labels = _indexed_images(n)
    seen, total = [], 0
    for x, y, n_valid in di.eval_batches(datasets.Split(labels, images), cifar_recipe(), batch_size):
        assert x.shape == (batch_size, 3, 32, 32) and y.shape == (batch_size, 1)
        seen.extend(_decode_index(x[:n_valid]))
        np.testing.assert_array_equal(y[:n_valid, 0], labels[seen[-n_valid:]])
        total += n_valid
    assert seen == list(range(n)) and total == n
