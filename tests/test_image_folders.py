"""Image folders (datasets.py's listing, images.py's decoding and augmentation, the worker pool):
what is read, converted, refused before training, and replaced during it."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import data_iterator as di
import datasets
import images
import workers
from errors import UserError
from helpers import ROOT, cifar_recipe, write_image, write_image_folder

IMAGENET = (datasets.IMAGENET_MEAN, datasets.IMAGENET_STD)
POOL_SIZE = 96  # the side of the worker tests' samples


def folder_recipe(size=32, crop='pad', augment=True, cutout=0, jitter=images.NO_JITTER):
    return images.Recipe(size, crop, augment, cutout, jitter, *IMAGENET)


def refused(root, *fragments):
    """datasets.load of the image folder ``root`` raises one line holding every fragment."""
    with pytest.raises(UserError) as error:
        datasets.load('folder', None if root is None else str(root))
    message = str(error.value)
    assert '\n' not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def take(split, recipe, batch, count, **stream):
    """``count`` batches of a training stream over ``split`` (stream: rank, size, start, pool...)."""
    batches = di.Batches(di.Stream(split, recipe, 5, 0, batch, **stream))
    try:
        return [batches.next() for _ in range(count)]
    finally:
        batches.close()


# ---------------------------------------------------------------- the listing


def test_classes_labels_and_the_interleaved_order(tmp_path):
    root = write_image_folder(tmp_path / 'f', classes=('b_bee', 'a_ant', 'c_cat'), train=3, val=2)
    write_image(root / 'train' / 'a_ant' / 'deeper' / 'x.jpeg', seed=99)  # class folders are walked through
    data = datasets.load('folder', str(root))
    assert data.classes == 3 and data.image_size == 32 and (data.mean, data.std) == IMAGENET
    assert len(data.train) == 10 and len(data.test) == 6
    files = [os.fsdecode(f) for f in data.train.files]
    # the sorted class folders are the labels; the first image of every class, then the second, ...
    assert files[:4] == ['a_ant/000.png', 'b_bee/000.jpg', 'c_cat/000.jpg', 'a_ant/001.jpg']
    assert list(data.train.labels) == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0] and files[-1] == 'a_ant/deeper/x.jpeg'
    assert list(data.test.labels) == [0, 1, 2, 0, 1, 2]
    assert data.train.path(1) == os.path.join(str(root), 'train', 'b_bee', '000.jpg')
    first, second = data.train.halves()
    assert set(first.labels) == set(second.labels) == {0, 1, 2}  # each half has every class
    assert list(datasets.load('folder', str(root), train_images=3).train.labels) == [0, 1, 2]
    assert datasets.class_count('folder', str(root)) == 3


def test_test_folder_is_accepted_for_val(tmp_path):
    data = datasets.load('imagenet', str(write_image_folder(tmp_path / 'f', val_name='test')))
    assert len(data.test) == 6 and data.image_size == 224 and data.classes == 3  # the classes come from the data


def test_what_is_not_an_image_by_its_name_is_left_out_with_one_warning(tmp_path, capsys):
    root = write_image_folder(tmp_path / 'f')
    (root / 'train' / 'ant' / 'notes.txt').write_text('not an image')
    (root / 'train' / 'README').write_text('beside the class folders')
    (root / 'train' / 'bee' / '.DS_Store').write_bytes(b'\0\1')  # hidden: passed over silently
    (root / 'train' / '.hidden_class').mkdir()
    data = datasets.load('folder', str(root))
    assert len(data.train) == 12 and data.classes == 3
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('warning: 2 files of ') and 'notes.txt' in lines[0]


@pytest.mark.parametrize('case, fragments', [
    ('no path', ['needs --dataset-path', 'train/<class>/*', 'docs/datasets.md']),
    ('a file', ['is not a folder', 'train/<class>/*']),
    ('no train', ['has no train/ folder', 'docs/datasets.md']),
    ('no val', ['has no val/ (or test/) folder']),
    ('empty class', ['train/bee has no image', 'every class folder needs at least one']),
    ('one class', ['has 1 class folder', 'two or more']),
    ('other classes', ['must hold the same class folders', 'dog is only in']),
    ('broken link', ['cannot read image file', 'gone.jpg (a broken link)', 'fix or remove it']),
    ('pipe', ['cannot read image file', 'pipe.png (not a regular file)']),
    ('no permission', ['cannot read image file', '(no permission) nor 2 more in', 'fix or remove them']),
])
def test_an_unusable_folder_is_refused_before_any_image_is_decoded(tmp_path, monkeypatch, case, fragments):
    root = write_image_folder(tmp_path / 'f')
    if case == 'no path':
        root = None
    elif case == 'a file':
        root = write_image(tmp_path / 'one.png')
    elif case == 'no train':
        os.rename(str(root / 'train'), str(root / 'training'))
    elif case == 'no val':
        os.rename(str(root / 'val'), str(root / 'valid'))
    elif case == 'empty class':
        for name in os.listdir(str(root / 'train' / 'bee')):
            os.remove(str(root / 'train' / 'bee' / name))
    elif case == 'one class':
        for split in ('train', 'val'):
            for c in ('bee', 'cat'):
                subprocess.run(['rm', '-r', str(root / split / c)], check=True)
    elif case == 'other classes':
        os.rename(str(root / 'val' / 'cat'), str(root / 'val' / 'dog'))
    elif case == 'broken link':
        os.symlink(str(tmp_path / 'nowhere.jpg'), str(root / 'train' / 'ant' / 'gone.jpg'))
    elif case == 'pipe':
        os.mkfifo(str(root / 'val' / 'cat' / 'pipe.png'))  # opening it would hang the job
    elif case == 'no permission':  # root reads every file: os.access is what a user without the right sees
        real = os.access
        monkeypatch.setattr(os, 'access', lambda p, mode: False if os.path.basename(p).startswith('000') else real(
            p, mode))
    refused(root, *fragments)


def test_a_symlink_loop_is_refused_not_followed_forever(tmp_path):
    root = write_image_folder(tmp_path / 'f')
    os.symlink(str(root / 'train'), str(root / 'train' / 'ant' / 'again'))  # train/ant/again/ant/again/...
    code = 'import datasets\ntry:\n    datasets.load("folder", {!r})\nexcept Exception as e:\n    print(e)'.format(
        str(root))
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert 'symlink loop' in out.stdout and 'again' in out.stdout, out.stdout + out.stderr


def test_a_link_to_a_folder_elsewhere_is_followed(tmp_path):
    root = write_image_folder(tmp_path / 'f')
    write_image_folder(tmp_path / 'more', classes=('ant',), train=2, val=0)
    os.symlink(str(tmp_path / 'more' / 'train' / 'ant'), str(root / 'train' / 'ant' / 'more'))
    assert len(datasets.load('folder', str(root)).train) == 14


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize('mode, suffix', [('L', '.png'), ('L', '.jpg'), ('CMYK', '.jpg'), ('RGBA', '.png'),
                                          ('P', '.png'), ('LA', '.png'), ('1', '.png'), ('I;16', '.png')])
def test_odd_modes_are_converted_to_rgb(tmp_path, mode, suffix):
    path = write_image(tmp_path / ('x' + suffix), (20, 12), mode)
    x = images.resized_centre(str(path), 12, 12)
    assert x.shape == (3, 12, 12) and x.dtype == np.uint8
    if mode in ('L', '1', 'LA') and suffix == '.png':
        assert (x[0] == x[1]).all() and (x[1] == x[2]).all()  # gray stays gray


def test_sixteen_bit_grayscale_keeps_its_brightness(tmp_path):
    path = write_image(tmp_path / 'g16.png', (8, 8), 'I;16', value=40000)
    with Image.open(str(path)) as opened:
        assert opened.mode.startswith('I')
    x = images.resized_centre(str(path), 8, 8)
    assert (x == 40000 >> 8).all()  # 156, not clipped to 255


@pytest.mark.parametrize('crop, size', [('pad', 32), ('resized', 224)])
def test_images_smaller_than_the_crop_are_resized_up(tmp_path, crop, size):
    path = str(write_image(tmp_path / 'tiny.jpg', (10, 7)))
    for augment in (True, False):
        x = images.file_sample(path, folder_recipe(size, crop, augment), (3, 4, True, 5, 6) if crop == 'pad' else (9,))
        assert x.shape == (3, size, size) and x.dtype == np.float32


def test_a_large_jpeg_is_decoded_at_a_reduced_size(tmp_path):
    path = str(write_image(tmp_path / 'big.jpg', (1000, 800)))
    with Image.open(path) as image:
        assert images.decoded(image, (100, 80)).size == (125, 100)  # 1/8: the smallest still >= 100x80
    with Image.open(path) as image:
        assert images.decoded(image, (300, 240)).size == (500, 400)  # 1/2
    assert images.resized_centre(path, 73, 64).shape == (3, 64, 64)


def test_the_random_resized_crop_follows_its_rule():
    rng = np.random.RandomState(0)
    for width, height in ((500, 375), (64, 64), (1000, 30)):
        for _ in range(200):
            left, top, w, h = images.crop_box(width, height, rng)
            assert 0 <= left and left + w <= width and 0 <= top and top + h <= height
            if (width, height) != (1000, 30):
                assert 0.08 * width * height * 0.97 <= w * h <= width * height
                assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    # no crop of a 1000x30 strip has an aspect ratio within [3/4, 4/3] and 8 % of its area: the centre
    # crop, its aspect clamped to 4/3
    assert images.crop_box(1000, 30, np.random.RandomState(1)) == (480, 0, 40, 30)


def test_colour_jitter_changes_colours_only_and_never_the_crop(tmp_path):
    path = str(write_image(tmp_path / 'p.png', (80, 60), seed=3))
    plain, jittered = (images.file_sample(path, folder_recipe(64, 'resized', jitter=j), (11,))
                       for j in (images.NO_JITTER, (0.4, 0.4, 0.4, 0.2)))
    again = images.file_sample(path, folder_recipe(64, 'resized', jitter=(0.4, 0.4, 0.4, 0.2)), (11,))
    np.testing.assert_array_equal(jittered, again)  # a function of the seed
    assert not np.array_equal(plain, jittered)
    gray = [x.mean(axis=0) for x in (plain, jittered)]
    assert np.corrcoef(gray[0].ravel(), gray[1].ravel())[0, 1] > 0.5  # the same crop, other colours


def test_a_folder_of_an_archives_images_gives_the_archives_samples(tmp_path):
    """At 32 px an image folder is augmented as the archive is: the same pixels give the same samples."""
    pixels = np.random.RandomState(4).randint(0, 256, (6, 3, 32, 32)).astype(np.uint8)
    labels = np.array([0, 1, 0, 1, 0, 1])
    for k, (image, label) in enumerate(zip(pixels, labels)):
        folder = tmp_path / 'f' / 'train' / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(str(folder / '{}.png'.format(k)))
    for c in '01':
        write_image(tmp_path / 'f' / 'val' / c / 'v.png')
    folder = datasets.load('folder', str(tmp_path / 'f')).train
    order = [int(os.path.basename(os.fsdecode(f)).split('.')[0]) for f in folder.files]
    archive = datasets.Split(labels[order], pixels[order])
    recipe = cifar_recipe(cutout=8)
    for a, b in zip(take(archive, recipe, 3, 4), take(folder, recipe, 3, 4)):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


# ---------------------------------------------------------------- bad images during training


def test_an_image_that_cannot_be_decoded_is_replaced_by_the_next_and_reported_once(tmp_path):
    root = write_image_folder(tmp_path / 'f', train=3)
    truncated = root / 'train' / 'bee' / '001.jpg'
    truncated.write_bytes(truncated.read_bytes()[:200])
    garbage = root / 'train' / 'ant' / '002.jpg'
    garbage.write_bytes(b'<html>not an image</html>')
    split = datasets.load('folder', str(root)).train
    bad = {split.path(i): i for i in range(len(split)) if split.path(i) in (str(truncated), str(garbage))}
    reports = []
    stream = di.Stream(split, folder_recipe(), 1, shuffle=False, batch_size=9,
                       report=lambda path, error, n: reports.append((path, error, n)))
    x, y = stream.batch()
    for path, i in bad.items():
        expected = stream.sample(i + 1)  # the next image, with the same draws as its place
        np.testing.assert_array_equal(x[i], images.file_sample(split.path(i + 1), stream.recipe, stream.item(i)[1]))
        assert y[i, 0] == split.labels[i + 1] and expected[1][0] == y[i, 0]
    assert sorted(p for p, _, _ in reports) == sorted(bad) and [n for _, _, n in reports] == [1, 2]
    assert any('truncated' in e.lower() for _, e, _ in reports) and any('cannot identify' in e for _, e, _ in reports)
    stream.batch()  # a second pass over the same files reports nothing new
    assert len(reports) == 2


def test_a_folder_of_undecodable_images_stops_the_job_in_one_line(tmp_path):
    root = write_image_folder(tmp_path / 'f', train=40, val=1, sizes=((8, 8),))
    for dirpath, _, names in os.walk(str(root / 'train')):
        for name in names:
            with open(os.path.join(dirpath, name), 'wb') as f:
                f.write(b'garbage')
    split = datasets.load('folder', str(root)).train
    batches = di.Batches(di.Stream(split, folder_recipe(), 1, batch_size=4, report=lambda *a: None))
    try:
        with pytest.raises(Exception) as error:
            batches.next()
    finally:
        batches.close()
    assert '100 consecutive images' in str(error.value) and 'cannot be decoded' in str(error.value)


# ---------------------------------------------------------------- workers


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """An image folder of larger images of several sizes and modes, for the worker tests."""
    root = tmp_path_factory.mktemp('photos')
    write_image_folder(root, classes=('a', 'b'), train=6, val=2, sizes=((120, 90), (70, 100), (64, 64)))
    write_image(root / 'train' / 'a' / 'gray.png', (90, 60), 'L')
    write_image(root / 'train' / 'b' / 'cmyk.jpg', (80, 80), 'CMYK')
    return datasets.load('folder', str(root), image_size=96)


@pytest.mark.parametrize('crop', ['resized', 'pad'])
def test_workers_compute_exactly_what_the_job_computes_itself(photos, crop):
    recipe = folder_recipe(96 if crop == 'resized' else 32, crop, cutout=8, jitter=(0.4, 0.4, 0.4, 0.2))
    alone = take(photos.train, recipe, 4, 5)
    with workers.Pool(2, recipe.size, 4) as pool:
        with_two = take(photos.train, recipe, 4, 5, pool=pool)
    with workers.Pool(1, recipe.size, 4) as pool:
        with_one = take(photos.train, recipe, 4, 5, pool=pool)
    for a, b, c in zip(alone, with_two, with_one):
        for k in range(2):
            np.testing.assert_array_equal(a[k], b[k])
            np.testing.assert_array_equal(a[k], c[k])


def test_a_stream_resumed_with_workers_continues_exactly_and_ranks_split_the_global_batch(photos):
    recipe = folder_recipe(96, 'resized')
    with workers.Pool(2, POOL_SIZE, 4) as pool:
        whole = take(photos.train, recipe, 4, 6, pool=pool)  # 14 images: batches straddle the data epochs
        resumed = take(photos.train, recipe, 4, 3, start=3 * 4, pool=pool)
        ranks = [take(photos.train, recipe, 4, 6, rank=r, size=2, pool=pool) for r in (0, 1)]
    for a, b in zip(whole[3:], resumed):
        np.testing.assert_array_equal(a[0], b[0])
    for k, batch in enumerate(whole):
        np.testing.assert_array_equal(batch[0], np.concatenate([ranks[0][k][0], ranks[1][k][0]]))
        np.testing.assert_array_equal(batch[1], np.concatenate([ranks[0][k][1], ranks[1][k][1]]))
    labels = np.concatenate([b[1][:, 0] for b in whole])
    assert sorted(labels[:14]) == sorted(photos.train.labels)  # the first pass holds every image once


def test_test_batches_with_workers_cover_each_image_once(photos):
    with workers.Pool(2, POOL_SIZE, 4) as pool:
        seen = [(y[:n, 0], x[:n]) for x, y, n in di.eval_batches(photos.test, folder_recipe(96, 'resized'), 3,
                                                                 pool=pool)]
    np.testing.assert_array_equal(np.concatenate([y for y, _ in seen]), photos.test.labels)
    x = np.concatenate([x for _, x in seen])
    np.testing.assert_array_equal(x[1], images.file_sample(photos.test.path(1), folder_recipe(96, 'resized', False),
                                                           None))


def test_workers_outlive_neither_signals_nor_their_job(tmp_path):
    """A SIGINT to the job's process group leaves its workers running (the job handles it); a job
    killed with -9 leaves no worker behind."""
    code = ('import os, signal, sys, time, workers\n'
            'pool = workers.Pool(2, 32, 4)\n'
            'print(" ".join(str(p) for p in pool.executor._processes), flush=True)\n'
            'signal.signal(signal.SIGINT, signal.SIG_IGN)\n'
            'time.sleep(60)\n')
    job = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        pids = [int(p) for p in job.stdout.readline().split()]
        assert len(pids) == 2
        os.killpg(job.pid, signal.SIGINT)
        for pid in pids:
            os.kill(pid, 0)  # still alive after the SIGINT
        job.kill()
        job.wait()
        deadline = 50
        while deadline and any(alive(pid) for pid in pids):
            import time
            time.sleep(0.1)
            deadline -= 1
        assert not any(alive(pid) for pid in pids)
    finally:
        job.kill()


def alive(pid):
    """Whether process ``pid`` runs (a zombie, whose parent has not waited for it, counts as gone)."""
    try:
        with open('/proc/{}/stat'.format(pid)) as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except FileNotFoundError:
        return False
