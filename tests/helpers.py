"""Helpers of the tests and of the fault suite, written once: tiny CIFAR-10 archives (good and
damaged), a plain depthwise convolution, running the scripts as a user does, reading what they
printed and wrote.

tests/conftest.py holds the fixtures built on them; tests/faults/faultlib.py what only the
fault suite needs (its configurations, inject.py, the tally).
"""
import atexit
import functools
import glob
import importlib.util
import io
import itertools
import json
import os
import pathlib
import pickle
import re
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

import launcher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300
# the tiny networks of the end-to-end tests (a retraining of DARTS_V2; a supernet, 4 images a batch)
TRAIN_TINY = ['-c', 'cpu', '--model-arch-name', 'DARTS_V2', '--num-cells', '3', '--output-filter', '4', '-f', '0']
SEARCH_TINY = ['-c', 'cpu', '--num-cells', '3', '--output-filter', '4', '-b', '4', '--num-nodes', '5']
NO_EIGENVALUE = ['--hessian-every', '0']  # for tests of something else: the eigenvalue is most of a tiny search
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def cifar_recipe(augment=True, cutout=0, size=32):
    """The images.Recipe of CIFAR-10's samples (the pad crop), written out here."""
    import images
    return images.Recipe(size, 'pad', augment, cutout, images.NO_JITTER, CIFAR_MEAN, CIFAR_STD)



# ---------------------------------------------------------------- data


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


def write_cifar100(path, n_train, n_test, mutate=None, seed=0):
    """A tiny CIFAR-100 archive in the official layout (cifar-100-python/train, test, meta): random
    pixels, fine label index % 100 (the coarse label fine // 5); ``mutate`` as for write_archive."""
    rng = np.random.RandomState(seed)
    with tarfile.open(str(path), 'w:gz') as tar:
        for name, n in (('train', n_train), ('test', n_test)):
            fine = [i % 100 for i in range(n)]
            batch = {b'data': rng.randint(0, 256, (n, 3072)).astype(np.uint8), b'fine_labels': fine,
                     b'coarse_labels': [f // 5 for f in fine], b'batch_label': name.encode(),
                     b'filenames': [b'img_%d.png' % i for i in range(n)]}
            content = batch if mutate is None else mutate(name, batch)
            if content is not None:
                data = content if isinstance(content, bytes) else pickle.dumps(content, protocol=2)
                _add_member(tar, 'cifar-100-python/' + name, data)
        meta = {b'fine_label_names': [b'fine%d' % i for i in range(100)],
                b'coarse_label_names': [b'coarse%d' % i for i in range(20)]}
        _add_member(tar, 'cifar-100-python/meta', pickle.dumps(meta, protocol=2))
    return path


def write_svhn(folder, n_train, n_test, seed=0):
    """A folder with tiny train_32x32.mat and test_32x32.mat in SVHN's format (MATLAB v5): X uint8
    (32, 32, 3, n), y (n, 1) in 1..10, the first image's label 10 (the digit 0)."""
    from scipy.io import savemat
    rng = np.random.RandomState(seed)
    os.makedirs(str(folder), exist_ok=True)
    for name, n in (('train_32x32.mat', n_train), ('test_32x32.mat', n_test)):
        savemat(os.path.join(str(folder), name), {'X': rng.randint(0, 256, (32, 32, 3, n)).astype(np.uint8),
                                                  'y': np.array([[(i + 9) % 10 + 1] for i in range(n)], np.uint8)})
    return folder


def write_image(path, size=(40, 30), mode='RGB', seed=0, value=None):
    """An image file (JPEG or PNG by its suffix) of ``size`` (w, h) and ``mode``, random pixels
    (or all ``value``)."""
    from PIL import Image
    rng = np.random.RandomState(seed)
    w, h = size
    if mode == 'I;16':
        pixels = np.full((h, w), value, np.uint16) if value is not None else rng.randint(0, 65536, (h, w)).astype(
            np.uint16)
        image = Image.fromarray(pixels)
    else:
        pixels = (rng.randint(0, 256, (h, w, 3)).astype(np.uint8) if value is None else
                  np.full((h, w, 3), value, np.uint8))
        image = Image.fromarray(pixels, 'RGB')
        if mode == 'P':
            image = image.quantize(16)
            image.info['transparency'] = 0
        elif mode != 'RGB':
            image = image.convert(mode)
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    image.save(str(path), **({'transparency': 0} if mode == 'P' else {}))
    return path


def write_image_folder(root, classes=('ant', 'bee', 'cat'), train=4, val=2, sizes=((40, 30), (24, 36), (50, 50)),
                       val_name='val'):
    """A tiny image folder: ``train``/``val`` images per class under train/<class>/ and
    <val_name>/<class>/, JPEG and PNG in turn, of the ``sizes`` in turn, random pixels."""
    k = 0
    for split, count in (('train', train), (val_name, val)):
        for c in classes:
            for i in range(count):
                suffix = '.jpg' if k % 2 == 0 else '.png'
                write_image(os.path.join(str(root), split, c, '{:03d}{}'.format(i, suffix)), sizes[k % len(sizes)],
                            seed=k)
                k += 1
    return root


def replace_entry(member, key, fn):
    """A ``mutate`` for write_archive that applies ``fn`` to entry ``key`` of batch ``member`` only."""
    def mutate(name, batch):
        if name == member:
            batch[key] = fn(batch[key])
        return batch
    return mutate


def truncated_archive(path):
    """A tiny archive cut after two thirds of its bytes (the end of its gzip stream is missing)."""
    write_archive(path, 8, 10)
    with open(str(path), 'rb') as f:
        data = f.read()
    with open(str(path), 'wb') as f:
        f.write(data[:len(data) * 2 // 3])
    return path


class Evil:
    """Pickles into the call ``function(argument)``, as a batch crafted to run code would."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


# ---------------------------------------------------------------- networks


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


def train_graph(args, batch_size, data=None):
    """(space, arch, training graph of model_eval.build) of darts_train's ``args`` (parsed flags)."""
    import darts_train
    import genotype
    import model_eval
    from args import space_of
    from tasks.classification import CIFAR10
    space = space_of(args)
    arch = genotype.load(args.model_arch_name, space)
    return space, arch, model_eval.build(space, arch, darts_train.network_of(args, data or CIFAR10), batch_size,
                                         args.label_smoothing, args.auxiliary_weight)


def eval_graph(args, batch_size, data=None):
    """The test graph of model_eval.build_test of darts_train's ``args`` (parsed flags)."""
    import darts_train
    import genotype
    import model_eval
    from args import space_of
    from tasks.classification import CIFAR10
    space = space_of(args)
    return model_eval.build_test(space, genotype.load(args.model_arch_name, space),
                                 darts_train.network_of(args, data or CIFAR10), batch_size)


# ---------------------------------------------------------------- running the scripts


def env(**extra):
    """The environment of a job: unbuffered output (so a killed job's output is complete), no
    fault log of inject.py, plus ``extra`` (a value None removes a variable)."""
    e = dict(os.environ, PYTHONUNBUFFERED='1')
    e.pop('DARTS_FAULT_LOG', None)
    for k, v in extra.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = str(v)
    return e


def run_cli(program, argv, timeout=TIMEOUT, cwd=ROOT, **env_extra):
    """Run ``program`` (a path from the repository root) with ``argv``, from ``cwd``, as a user
    would: a CompletedProcess. The scripts of launcher.PROGRAMS run in a fork of the test
    process's launcher (tests/launcher.py), unless ``env_extra`` sets a variable that a process
    reads at its start or DARTS_TESTS_LAUNCHER=0; the others in a process of their own."""
    args = [sys.executable, os.path.join(ROOT, program)] + [str(a) for a in argv]
    if env_extra or program not in launcher.PROGRAMS or os.environ.get('DARTS_TESTS_LAUNCHER') == '0':
        return subprocess.run(args, cwd=str(cwd), capture_output=True, text=True, timeout=timeout,
                              env=env(**env_extra))
    return forked(args, cwd, timeout)


JOB_IDS = itertools.count()


@functools.lru_cache(maxsize=None)
def started_launcher():
    """The launcher of this test process (one, started at the first job, ended with the process)."""
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, 'tests', 'launcher.py')], cwd=ROOT, env=env(),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    atexit.register(process.stdin.close)
    return process


def forked(args, cwd, timeout):
    """The job ``args`` run by the launcher, as subprocess.run(args, capture_output=True) gives it."""
    process = started_launcher()
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, 'stdout'), os.path.join(tmp, 'stderr')
        request = dict(id=next(JOB_IDS), program=os.path.relpath(args[1], ROOT), argv=args[2:], cwd=str(cwd),
                       env=env(), stdout=out, stderr=err, timeout=timeout)
        process.stdin.write(json.dumps(request) + '\n')
        process.stdin.flush()
        answer = {}
        while answer.get('id') != request['id']:  # (the answer to a job whose wait was interrupted is passed over)
            line = process.stdout.readline()
            if not line:
                raise RuntimeError('the tests\' launcher ended (exit code {})'.format(process.wait()))
            answer = json.loads(line)
        stdout, stderr = (pathlib.Path(path).read_text(encoding='utf-8', errors='replace') for path in (out, err))
    if answer['timed_out']:
        raise subprocess.TimeoutExpired(args, timeout, stdout, stderr)
    return subprocess.CompletedProcess(args, answer['returncode'], stdout, stderr)


def train(*argv, **kwargs):
    """darts_train.py with ``argv`` (keyword arguments as for run_cli)."""
    return run_cli('darts_train.py', argv, **kwargs)


def cuda_installed():
    """Whether nnabla's CUDA extension is installed (then --context cudnn is not refused)."""
    try:
        return importlib.util.find_spec('nnabla_ext.cudnn') is not None
    except ImportError:
        return False


# ---------------------------------------------------------------- what a job printed


_NOISE = re.compile(r'\[nnabla\]|^\s*epoch \d+/\d+:|\d+%\|.*\||it/s\]|B/s\]')


def error_lines(stderr):
    """stderr without nnabla's log lines and progress bars (tqdm redraws with \\r)."""
    return [line for line in re.split(r'[\r\n]', stderr) if line.strip() and not _NOISE.search(line)]


def one_line(res, *fragments, code=2):
    """Assert exit ``code`` (any non-zero one if None) with exactly one 'error:' line on stderr
    holding every fragment, and no traceback; returns the line."""
    lines = error_lines(res.stderr)
    context = 'exit {}\nstdout:\n{}\nstderr:\n{}'.format(res.returncode, res.stdout[-2000:], res.stderr[-3000:])
    assert res.returncode != 0, context
    if code is not None:
        assert res.returncode == code, context
    assert 'Traceback' not in res.stderr, context
    assert len(lines) == 1 and lines[0].startswith('error: '), context
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# ---------------------------------------------------------------- files of a run


def snapshot(folder):
    """{relative path: bytes} of every file under ``folder`` (nothing if it does not exist)."""
    files = {}
    for root, _, names in os.walk(str(folder)):
        for name in names:
            path = os.path.join(root, name)
            with open(path, 'rb') as f:
                files[os.path.relpath(path, str(folder))] = f.read()
    return files


def checkpoint_folders(folder, complete=True):
    """The checkpoint folders of a run, oldest first: the complete ones (with a state.json), as
    the job sees them, or with ``complete=False`` every checkpoint_* folder."""
    if complete:
        return sorted(os.path.dirname(p) for p in glob.glob(os.path.join(str(folder), 'checkpoint_*', 'state.json')))
    return sorted(glob.glob(os.path.join(str(folder), 'checkpoint_*')))


def read_h5(path):
    """{dataset name: array} of an .h5 file (parameters or solver states), read with h5py."""
    import h5py
    out = {}
    with h5py.File(str(path), 'r') as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = np.asarray(obj[()])
        f.visititems(visit)
    return out


def read_series(folder, name):
    """[(index text, value text)] of monitor series ``name`` (file name with dashes) in ``folder``."""
    with open(os.path.join(str(folder), name + '.series.txt')) as f:
        return [tuple(line.split()) for line in f.read().splitlines()]
