"""NAS-Bench-201's table: the true test accuracy of every cell of the space, read once and checked.

The embedded table, nats_tss_test_accuracy.csv.gz beside this file, holds the 15,625 cells in
NAS-Bench-201's index order, each with its string and its mean test accuracy (%) after 200 epochs
on CIFAR-10, CIFAR-100 and ImageNet16-120, as NATS-Bench's API reports them (``hp=200``): Dong &
Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search", ICLR 2020;
Dong, Liu, Musial, Gabrys, "NATS-Bench: Benchmarking NAS Algorithms for Architecture Topology
and Size", TPAMI 2021 (its topology search space). docs/reference.md says more.

``--benchmark-table FILE`` takes another file with the same columns (gzipped or not). A table
that is missing, truncated, has other columns or other values, or holds a cell twice is refused
in one line.
"""
import collections
import csv
import gzip
import io
import os
import zlib

from errors import UserError
from files import MB, check_input
from spaces.nas_bench_201.arch import EDGES, OPS, parse

EMBEDDED = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'nats_tss_test_accuracy.csv.gz')
COLUMNS = ('index', 'arch', 'cifar10_test_acc', 'cifar100_test_acc', 'imagenet16_120_test_acc')
DATASETS = ('CIFAR-10', 'CIFAR-100', 'ImageNet16-120')  # the titles of the three accuracy columns
CELLS = len(OPS) ** len(EDGES)
MAX_BYTES = 64 * MB
Entry = collections.namedtuple('Entry', 'index accuracies')  # accuracies: one per DATASETS, in %


def text_of(path):
    """The table file's text: gunzipped where it is gzip, UTF-8."""
    check_input(path, 'benchmark table', MAX_BYTES)
    try:
        with open(path, 'rb') as f:
            data = f.read()
        if data[:2] == b'\x1f\x8b':
            data = gzip.decompress(data)
        return data.decode('utf-8')
    except OSError as e:  # an unreadable file, or a gzip stream that ends too early
        raise UserError('cannot read benchmark table {}: {}'.format(path, e.strerror or e))
    except (EOFError, zlib.error, UnicodeDecodeError) as e:
        raise UserError('benchmark table {} is damaged or truncated: {}'.format(path, e))


def read(path=EMBEDDED):
    """(the Table's {cell string: Entry}, the best accuracy of each column) of the file at ``path``."""
    rows = csv.reader(io.StringIO(text_of(path)))
    header = tuple(next(rows, ()))
    if header != COLUMNS:
        raise UserError('benchmark table {}: its columns are {}, expected {}'.format(
            path, ','.join(header) or 'none', ','.join(COLUMNS)))
    entries = {}
    for line, row in enumerate(rows, 2):
        where = 'benchmark table {} line {}'.format(path, line)
        if len(row) != len(COLUMNS):
            raise UserError('{}: {} values, expected {}'.format(where, len(row), len(COLUMNS)))
        if row[0] != str(len(entries)):
            raise UserError('{}: index {!r}, expected {} (the cells in NAS-Bench-201\'s index order)'.format(
                where, row[0], len(entries)))
        parse(row[1], where)
        if row[1] in entries:
            raise UserError('{}: cell {} is there twice (index {} and {})'.format(
                where, row[1], entries[row[1]].index, row[0]))
        try:
            accuracies = tuple(float(v) for v in row[2:])
        except ValueError:
            raise UserError('{}: the accuracies {} are not numbers'.format(where, ','.join(row[2:])))
        if not all(0 <= a <= 100 for a in accuracies):
            raise UserError('{}: the accuracies {} are not percentages'.format(where, ','.join(row[2:])))
        entries[row[1]] = Entry(len(entries), accuracies)
    if len(entries) != CELLS:
        raise UserError('benchmark table {} holds {} cells, the space {}: is it truncated?'.format(
            path, len(entries), CELLS))
    return entries, tuple(max(e.accuracies[k] for e in entries.values()) for k in range(len(DATASETS)))
