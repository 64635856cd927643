"""The datasets both jobs read, as they are on disk: their facts, their checks, their downloads.

- ``cifar10``, ``cifar100``: the official python archives (or their extracted folders), read
  through an unpickler that builds only numpy arrays, so a crafted batch file cannot run code.
- ``svhn``: the official ``train_32x32.mat`` and ``test_32x32.mat`` (MATLAB v5, read by SciPy,
  a parser that runs no code); label 10 is the digit 0.
- ``imagenet``, ``folder``: image files laid out as ``train/<class>/*`` and ``val/<class>/*``
  (``test/`` for ``val/``), the classes the sorted folder names, as torchvision's ImageFolder
  reads them. Only the listing is read here: the files are decoded while training (images.py).

Without ``--dataset-path`` an archive is downloaded into nnabla's data folder and md5-checked;
image folders are never downloaded (ImageNet needs its licence). A split keeps its stored
order; an image folder's order interleaves its classes (the first image of every class, then
the second, ...), so that the first N images and the two halves of a search are balanced.
"""
import collections
import hashlib
import http.client
import io
import os
import pickle
import posixpath
import stat
import tarfile
import urllib.error
import zlib

import numpy as np
from nnabla.utils.download import download, get_data_home

from errors import UserError, warn
from files import MB, check_input

NAMES = ('cifar10', 'cifar100', 'svhn', 'imagenet', 'folder')
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LAYOUT = 'an image folder holds train/<class>/* and val/<class>/* (docs/datasets.md)'
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.pgm', '.bmp', '.tif', '.tiff', '.webp')  # torchvision's
MAX_ARCHIVE = 1024 * MB  # the largest official file, SVHN's train_32x32.mat, is 182 MB
ARRAY_SIZE = 32  # the side of the images of the archives
DOWNLOAD_URL_VARIABLE = 'DARTS_DATA_URL'  # tests only: a folder URL that replaces the official ones

Download = collections.namedtuple('Download', 'name url md5')
Spec = collections.namedtuple('Spec', 'title classes mean std downloads')
SPECS = {
    'cifar10': Spec('CIFAR-10', 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), (Download(
        'cifar-10-python.tar.gz', 'https://www.cs.toronto.edu/~kriz/', 'c58f30108f718f92721af3b95e74349a'),)),
    # CIFAR-100's and SVHN's statistics as RobustDARTS normalises them (its src/utils.py)
    'cifar100': Spec('CIFAR-100', 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), (Download(
        'cifar-100-python.tar.gz', 'https://www.cs.toronto.edu/~kriz/', 'eb9058c3a382ffc7106e4002c42a8d85'),)),
    'svhn': Spec('SVHN', 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), (
        Download('train_32x32.mat', 'http://ufldl.stanford.edu/housenumbers/', 'e26dedcc434d2e4c54c9b2d4a06d8373'),
        Download('test_32x32.mat', 'http://ufldl.stanford.edu/housenumbers/', 'eb5a983be6a315427106f1b164d9cef3'))),
    'imagenet': Spec('ImageNet', 1000, IMAGENET_MEAN, IMAGENET_STD, ()),
    'folder': Spec('image folder', None, IMAGENET_MEAN, IMAGENET_STD, ()),
}
# the python archives: their folder, the members of each split, the key of the labels
PICKLED = {'cifar10': ('cifar-10-batches-py', ['data_batch_{}'.format(k) for k in range(1, 6)], ['test_batch'],
                       'labels'),
           'cifar100': ('cifar-100-python', ['train'], ['test'], 'fine_labels')}
_NUMPY_GLOBALS = frozenset([
    ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
    ('numpy', 'ndarray'), ('numpy', 'dtype'),
    ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
    ('_codecs', 'encode')])


class Split:
    """The labels (int32) and images of a dataset's training or test part, in stored order: uint8
    arrays (N, 3, H, W) in memory, or the files (bytes, relative to ``root``) of an image folder."""

    def __init__(self, labels, images=None, files=None, root=None):
        self.labels, self.images, self.files, self.root = np.asarray(labels, np.int32), images, files, root

    def __len__(self):
        return len(self.labels)

    def take(self, part):
        """The images at ``part`` (a slice) as a Split."""
        return Split(self.labels[part], None if self.images is None else self.images[part],
                     None if self.files is None else self.files[part], self.root)

    def first(self, n):
        """The first ``n`` images (all of them when n is 0): quick trials on a subset."""
        return self.take(slice(0, n or None))

    def halves(self):
        """Two fixed, disjoint halves: the search trains the weights on one, the alphas on the other."""
        half = len(self) // 2
        return self.take(slice(0, half)), self.take(slice(half, 2 * half))

    def path(self, index):
        """The file of image ``index`` of an image folder."""
        return os.path.join(self.root, os.fsdecode(self.files[index]))


Dataset = collections.namedtuple('Dataset', 'name train test classes image_size mean std')


def imagenet_network(name, image_size):
    """Whether a dataset's images go through the ImageNet network and augmentation (the paper's
    mobile setting): ImageNet, and image folders cropped to more than 64 pixels."""
    return name == 'imagenet' or image_size > 64


def default_image_size(name):
    """The side images are cropped to without --image-size: 224 for ImageNet, 32 for the others."""
    return 224 if name == 'imagenet' else ARRAY_SIZE


def on_disk(name):
    """Whether a dataset is image files decoded while training (else arrays in memory)."""
    return name in ('imagenet', 'folder')


def class_count(name, path):
    """The number of classes without reading any image, as ``load`` finds them: the class folders of
    an image folder's train/, else the dataset's own (ImageNet's 1000 when no folder is given, for
    --summary-only)."""
    if on_disk(name) and path is not None:
        return len(class_folders(split_folders(path)[0]))
    return SPECS[name].classes


def load(name, path=None, image_size=None, train_images=0, test_images=0, with_train=True):
    """The Dataset ``name`` from ``path`` (None: download the archive), with the first
    ``train_images``/``test_images`` of each split (0: all), its classes counted from the data.
    Without ``with_train`` an image folder's train/ is not walked (its class folders alone name
    the classes) and the training split is empty."""
    spec = SPECS[name]
    if on_disk(name):
        train, test, classes, ignored = read_folder(path, with_train)
        if ignored:
            warn('{} files of {} are not images by their name and are not used, the first: {}'.format(
                len(ignored), path, ignored[0]))
    else:
        path = path if path is not None else fetch(name)
        check_input(path, 'dataset', MAX_ARCHIVE, folder_ok=True)
        train, test = (read_svhn if name == 'svhn' else read_pickled)(name, path)
        classes = spec.classes
    return Dataset(name, train.first(train_images), test.first(test_images), classes,
                   image_size or default_image_size(name), spec.mean, spec.std)


# ---------------------------------------------------------------- downloads


def why(error):
    """One-line description of an exception, for embedding in a UserError message."""
    return ' '.join('{}: {}'.format(type(error).__name__, error).split())


def check_md5(path, md5):
    """Raise UserError and remove ``path`` unless its md5 is ``md5``: a bad copy must not linger."""
    digest = hashlib.md5()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    if digest.hexdigest() != md5:
        os.remove(path)
        raise UserError('{}: md5 is {}, expected {}; the file was removed, run again to download it '
                        'or pass --dataset-path'.format(path, digest.hexdigest(), md5))


def fetch_file(item, title, folder):
    """Path of the md5-checked file ``item`` in ``folder``, downloading it first if it is missing."""
    path = os.path.join(folder, item.name)
    if os.path.exists(path):
        check_md5(path, item.md5)
        return path
    url = (os.environ.get(DOWNLOAD_URL_VARIABLE) or item.url).rstrip('/') + '/' + item.name
    part = path + '.part'
    if os.path.exists(part):  # nnabla's download() keeps an existing file instead of fetching
        os.remove(part)
    os.makedirs(folder, exist_ok=True)
    try:
        download(url, output_file=part, open_file=False)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        if os.path.exists(part):
            os.remove(part)
        raise UserError('cannot download {} from {} ({}); pass a local copy with --dataset-path'
                        .format(title, url, getattr(e, 'reason', None) or why(e)))
    check_md5(part, item.md5)
    os.replace(part, path)
    return path


def fetch(name):
    """The local path of a dataset's download in nnabla's data folder (~/nnabla_data): the archive
    itself, or for SVHN the folder of its two files."""
    spec = SPECS[name]
    folder = get_data_home() if len(spec.downloads) == 1 else os.path.join(get_data_home(), name)
    paths = [fetch_file(item, spec.title, folder) for item in spec.downloads]
    return paths[0] if len(paths) == 1 else folder


# ---------------------------------------------------------------- CIFAR-10 and CIFAR-100


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays: a batch file can never make it run code."""

    def __init__(self, data, name, title):
        super().__init__(io.BytesIO(data), encoding='bytes')
        self._name, self._title = name, title

    def find_class(self, module, name):
        """Admit only the few numpy globals an array pickle refers to."""
        if (module, name) not in _NUMPY_GLOBALS:
            raise UserError('refusing to load {}: it asks for {}.{}, which a {} batch never needs'
                            .format(self._name, module, name, self._title))
        return super().find_class(module, name)


def _entry(batch, key, name):
    """Value of ``key`` in an unpickled batch, whose keys are bytes (python 2 file) or str."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise UserError('{}: the batch has no {!r} entry'.format(name, key))


def check_labels(labels, count, classes, name, first=0):
    """int32 labels: as many as images, integers in first..first+classes-1 (else UserError naming ``name``)."""
    try:
        labels = np.asarray(labels)
    except (TypeError, ValueError):
        labels = np.zeros((0, 0))
    if labels.ndim != 1 or len(labels) != count:
        raise UserError('{}: {} labels for {} images'.format(name, labels.size, count))
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserError('{}: labels must be integers, found {}'.format(name, labels.dtype))
    bad = labels[(labels < first) | (labels >= first + classes)]
    if bad.size:
        raise UserError('{}: label {} is outside {}..{}'.format(name, bad[0], first, first + classes - 1))
    return labels.astype(np.int32)


def parse_batch(data, name, dataset):
    """Unpickle and validate one batch; return uint8 images (n, 3, 32, 32) and int32 labels (n,)."""
    spec, label_key = SPECS[dataset], PICKLED[dataset][3]
    try:
        batch = _BatchUnpickler(data, name, spec.title).load()
    except UserError:
        raise
    except Exception as e:  # a corrupt pickle can fail in many ways; all are the file's fault
        raise UserError('cannot unpickle {}: {}'.format(name, why(e)))
    if not isinstance(batch, dict):
        raise UserError('{}: expected a dict, found {}'.format(name, type(batch).__name__))
    images, labels = _entry(batch, 'data', name), _entry(batch, label_key, name)
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 2
            and images.shape[1] == 3072):
        raise UserError('{}: data must be a uint8 array of shape (n, 3072), found {} {}'.format(
            name, getattr(images, 'dtype', type(images).__name__), getattr(images, 'shape', '')))
    if len(images) == 0:
        raise UserError('{}: the batch has no images'.format(name))
    labels = check_labels(labels, len(images), spec.classes, name)
    return images.reshape(-1, 3, ARRAY_SIZE, ARRAY_SIZE), labels


def batches_from_tar(path, dataset):
    """Parse the batches straight from the archive members, reading it once, front to back."""
    folder, train, test, _ = PICKLED[dataset]
    found = {}
    try:
        with tarfile.open(path, 'r:gz') as tar:
            for member in tar:  # iterating to the end also detects a truncated archive
                parent, name = posixpath.split(posixpath.normpath(member.name))
                if member.isfile() and parent == folder and name in train + test:
                    label = '{}:{}/{}'.format(path, parent, name)
                    found[name] = parse_batch(tar.extractfile(member).read(), label, dataset)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise UserError('cannot read {}: not a tar.gz archive, or truncated ({})'.format(path, why(e)))
    missing = [b for b in train + test if b not in found]
    if missing:
        raise UserError('{}: missing batch {}/{}'.format(path, folder, missing[0]))
    return found


def batches_from_folder(path, dataset):
    """Parse the batches of an extracted archive folder (or of its parent)."""
    folder, train, test, _ = PICKLED[dataset]
    if os.path.isdir(os.path.join(path, folder)):
        path = os.path.join(path, folder)
    found = {}
    for b in train + test:
        file = os.path.join(path, b)
        if not os.path.isfile(file):
            raise UserError('{}: missing batch {}'.format(path, b))
        try:
            with open(file, 'rb') as f:
                data = f.read()
        except OSError as e:
            raise UserError('cannot read {}: {}'.format(file, why(e)))
        found[b] = parse_batch(data, file, dataset)
    return found


def read_pickled(dataset, path):
    """(train, test) Splits of a CIFAR python archive (.tar.gz) or its extracted folder."""
    found = (batches_from_folder if os.path.isdir(path) else batches_from_tar)(path, dataset)
    _, train, test, _ = PICKLED[dataset]
    return [Split(np.concatenate([found[b][1] for b in names]), np.concatenate([found[b][0] for b in names]))
            for names in (train, test)]


# ---------------------------------------------------------------- SVHN


def read_mat(path, name):
    """(images uint8 (n, 3, 32, 32), labels 0..9) of one SVHN .mat file, checked."""
    from scipy.io import loadmat  # SciPy comes with nnabla; loaded only for SVHN
    check_input(path, 'dataset file', MAX_ARCHIVE)
    try:
        mat = loadmat(path)
        x, y = mat['X'], mat['y']
    except KeyError as e:
        raise UserError('{}: no {} array: not an SVHN {}'.format(path, e, name))
    except Exception as e:  # scipy raises ValueError, TypeError, NotImplementedError (v7.3 files), ...
        raise UserError('cannot read {}: not a MATLAB file of SVHN ({})'.format(path, why(e)))
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 4 and x.shape[:3] == (32, 32, 3)):
        raise UserError('{}: X must be a uint8 array of shape (32, 32, 3, n), found {} {}'.format(
            path, getattr(x, 'dtype', type(x).__name__), getattr(x, 'shape', '')))
    if x.shape[3] == 0:
        raise UserError('{}: X holds no images'.format(path))
    labels = check_labels(np.ravel(y) if isinstance(y, np.ndarray) and y.ndim == 2 and y.shape[1] == 1 else y,
                          x.shape[3], 10, path, first=1)
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels % 10  # SVHN writes the digit 0 as 10


def read_svhn(dataset, path):
    """(train, test) Splits of the folder holding train_32x32.mat and test_32x32.mat."""
    if not os.path.isdir(path):
        raise UserError('--dataset svhn: --dataset-path {} must be the folder of train_32x32.mat and '
                        'test_32x32.mat'.format(path))
    splits = []
    for item in SPECS['svhn'].downloads:
        images, labels = read_mat(os.path.join(path, item.name), item.name)
        splits.append(Split(labels, images))
    return splits


# ---------------------------------------------------------------- image folders


def split_folders(root):
    """The train/ and val/ (or test/) folders of an image folder, or one line on what is missing."""
    if root is None:
        raise UserError('an image folder needs --dataset-path (ImageNet is not downloaded: its licence): {}'.format(
            LAYOUT))
    if not os.path.isdir(root):
        raise UserError('--dataset-path {} is not a folder: {}'.format(root, LAYOUT))
    train = os.path.join(root, 'train')
    val = next((os.path.join(root, v) for v in ('val', 'test') if os.path.isdir(os.path.join(root, v))), None)
    if not os.path.isdir(train) or val is None:
        raise UserError('{} has no {} folder: {}'.format(root, 'train/' if not os.path.isdir(train) else
                                                          'val/ (or test/)', LAYOUT))
    return train, val


def class_folders(folder):
    """The sorted names of the visible sub-folders of ``folder`` (links to folders included)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if not e.name.startswith('.') and e.is_dir())


class Listing:
    """The files of one split of an image folder, found by walking it once; what cannot be used is
    collected to be reported (``ignored``: not an image by its name; ``unreadable``)."""

    def __init__(self, folder):
        self.folder, self.ignored, self.unreadable, self.per_class = folder, [], [], {}
        for name in class_folders(folder):
            self.per_class[name] = self.walk(os.path.join(folder, name), [])
        with os.scandir(folder) as entries:  # files beside the class folders belong to no class
            self.ignored += [e.path for e in entries if not e.name.startswith('.') and not e.is_dir()]

    def walk(self, folder, ancestors):
        """The image files under ``folder`` (relative to the split's folder), sorted, following links
        to folders but refusing a link back to a folder above it (a loop has no end)."""
        info = os.stat(folder)
        identity = (info.st_dev, info.st_ino)
        if identity in ancestors:
            raise UserError('{} is a link back to a folder that contains it: a symlink loop; remove it'.format(
                folder))
        found = []
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.startswith('.'):
                    continue
                if entry.is_dir():
                    found += self.walk(entry.path, ancestors + [identity])
                elif not entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    self.ignored.append(entry.path)
                elif not entry.is_file() or not os.access(entry.path, os.R_OK):
                    self.unreadable.append(entry.path)  # a broken link, a pipe, no permission
                else:
                    found.append(os.path.relpath(entry.path, self.folder))
        return found

    def check(self):
        """Refuse a split with an empty class folder, with one class, or with unreadable files."""
        empty = [name for name, files in self.per_class.items() if not files]
        if empty:
            raise UserError('{} has no image ({}): every class folder needs at least one'.format(
                os.path.join(self.folder, empty[0]), ', '.join(IMAGE_EXTENSIONS)))
        if len(self.per_class) < 2:
            raise UserError('{} has {} class folder{}: a classifier needs two or more ({})'.format(
                self.folder, len(self.per_class), '' if self.per_class else 's', LAYOUT))
        if self.unreadable:
            path, more = self.unreadable[0], len(self.unreadable) - 1
            reason = ('a broken link' if not os.path.exists(path) else
                      'not a regular file' if not stat.S_ISREG(os.stat(path).st_mode) else 'no permission')
            raise UserError('cannot read image file {} ({}){}: fix or remove {}'.format(
                path, reason, ' nor {} more in {}'.format(more, self.folder) if more else '',
                'them' if more else 'it'))

    def split(self, classes):
        """The Split of these files, labelled by ``classes``, the classes interleaved."""
        columns = [self.per_class[name] for name in classes]
        order = [(c, k) for k in range(max(map(len, columns))) for c in range(len(columns)) if k < len(columns[c])]
        files = np.array([os.fsencode(columns[c][k]) for c, k in order])
        return Split([c for c, _ in order], files=files, root=self.folder)


def read_folder(root, with_train=True):
    """(train, test, number of classes, ignored files) of an image folder, checked before any image is
    decoded (without ``with_train``, an empty training split)."""
    train_folder, val_folder = split_folders(root)
    listings = [Listing(train_folder) if with_train else None, Listing(val_folder)]
    for listing in filter(None, listings):
        listing.check()
    classes = list(listings[0].per_class) if with_train else class_folders(train_folder)
    other = list(listings[1].per_class)
    if classes != other:
        extra = sorted(set(other) - set(classes))
        missing = sorted(set(classes) - set(other))
        raise UserError('{} and {} must hold the same class folders: {}'.format(
            train_folder, val_folder, '{} is only in {}'.format(extra[0], val_folder) if extra else
            '{} is only in {}'.format(missing[0], train_folder)))
    train = listings[0].split(classes) if with_train else Split([], files=np.array([], 'S1'), root=train_folder)
    ignored = [path for listing in listings if listing for path in listing.ignored]
    return train, listings[1].split(classes), len(classes), ignored
