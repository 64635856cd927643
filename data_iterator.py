"""The batches of both jobs: an endless training stream that a resumed run continues exactly,
the test batches, and the fixed batches of the Hessian eigenvalue.

Sample g of a stream (g = 0, 1, ... over the whole run) is the image at place i = g % n of data
epoch e = g // n: image order_e[i], augmented with the draws of place i, both drawn from
RandomState([seed, stream, e]) (images.draws), so a sample is a function of (seed, stream, g)
alone. Under mpirun rank r of N computes rows r B/N to (r + 1) B/N of every global batch of B,
its k-th sample being global sample (k // b) B + r b + k % b with b = B/N: the ranks together
see the very batches one process would, whatever N.

In-memory images are augmented on the iterator's thread; image files in the worker processes
of a ``workers.Pool`` when one is given (chunks of consecutive samples, submitted ahead of
need), else on that thread too. A file that cannot be decoded is replaced by the next image of
the split that can, reported once (``report``) and counted; the run goes on.
"""
import concurrent.futures

import numpy as np
from nnabla.utils.data_iterator import data_iterator
from nnabla.utils.data_source import DataSource

import datasets
import images
import workers
from tasks.classification import Data
from errors import Stop, warn

MAX_REPLACED = 100  # consecutive images that cannot be decoded before the job stops


def network_input(name, path, image_size):
    """What a network is fed (a tasks.classification.Data) from dataset ``name`` at ``path`` at ``image_size``,
    without reading an image: the classes are the dataset's, or the class folders of an image folder."""
    return Data(image_size, datasets.class_count(name, path), datasets.imagenet_network(name, image_size))


def recipe(dataset, cutout=0, jitter=images.NO_JITTER):
    """The images.Recipe of a datasets.Dataset's training samples (its test samples: augment=False):
    the ImageNet recipe's resized crop for the ImageNet network, else the CIFAR recipe's pad crop."""
    crop = 'resized' if datasets.imagenet_network(dataset.name, dataset.image_size) else 'pad'
    return images.Recipe(dataset.image_size, crop, True, cutout, tuple(jitter), dataset.mean, dataset.std)


def worker_pool(dataset, count, batch_size):
    """The workers.Pool of ``count`` processes that decode the files of an image folder into batches
    of ``batch_size`` (this rank's share; None for the archives, or for 0 workers)."""
    use = datasets.on_disk(dataset.name) and count > 0
    return workers.Pool(count, dataset.image_size, batch_size) if use else None


def report_undecodable(path, error, replaced):
    """The warning of an image file that cannot be decoded (once per file and rank)."""
    warn('cannot decode {} ({}): replaced by the next image of the folder; {} file{} replaced so far'.format(
        path, error, replaced, '' if replaced == 1 else 's'), every_rank=True)


class Stream(DataSource):
    """This rank's samples of a stream over ``split`` (a datasets.Split) made by ``recipe`` (an
    images.Recipe), from global sample ``start`` (a multiple of ``batch_size``, the global B)."""

    def __init__(self, split, recipe, seed, stream=0, batch_size=1, rank=0, size=1, start=0, shuffle=True,
                 pool=None, report=None):
        super().__init__(shuffle=shuffle)
        if len(split) == 0:
            raise ValueError('a Stream needs at least one image')
        if pool is not None and batch_size // size > pool.batch_size:
            raise ValueError('the pool holds batches of {} samples, not {}'.format(pool.batch_size, batch_size // size))
        self._variables = ('x', 'y')
        self._size = len(split)  # nnabla's pass counter only: the place in the stream is self.next_sample
        self.split, self.recipe, self.seed, self.stream = split, recipe, seed, stream
        self.batch_size, self.local, self.rank = batch_size, batch_size // size, rank
        self.next_sample = start // batch_size * self.local
        self.pool, self.report = pool, report or report_undecodable
        self.plans, self.chunks, self.current = {}, {}, (None, None)
        self.ring = pool.acquire() if pool is not None else None
        self.error, self.replaced = None, set()

    def reset(self):
        self._position = 0

    def global_sample(self, k):
        """The place in the whole stream of this rank's sample ``k``."""
        return (k // self.local) * self.batch_size + self.rank * self.local + k % self.local

    def plan(self, epoch):
        """(order, draws) of data epoch ``epoch``; the two newest are kept (a batch may straddle)."""
        if epoch not in self.plans:
            rng = np.random.RandomState([self.seed, self.stream, epoch])
            order = rng.permutation(len(self.split))
            self.plans = {e: p for e, p in self.plans.items() if e == epoch - 1}
            self.plans[epoch] = order, images.draws(self.recipe, rng, len(self.split))
        return self.plans[epoch]

    def item(self, k):
        """(image index, draws row) of this rank's sample ``k``."""
        epoch, place = divmod(self.global_sample(k), len(self.split))
        order, rows = self.plan(epoch)
        return (order[place] if self._shuffle else place), tuple(r[place] for r in rows)

    def _get_data(self, position):
        k = self.next_sample
        self.next_sample += 1
        try:
            return self.sample(k)
        except Exception as e:  # raised on the iterator's thread: kept for next() to raise in the job's
            self.error = self.error or e
            return np.zeros((3, self.recipe.size, self.recipe.size), np.float32), np.zeros(1, np.int32)

    def sample(self, k):
        """(float32 (3, S, S), int32 (1,)) of this rank's sample ``k``."""
        index, row = self.item(k)
        if self.split.files is None:
            x = images.array_sample(self.split.images[index], self.recipe, row if self.recipe.augment else None)
        else:
            x, error = self.computed(k)
            if x is None:
                x, index = self.replacement(index, row, error)
        return x, np.array([self.split.labels[index]], dtype=np.int32)

    def file_items(self, first, count):
        return [(self.split.path(i), r) for i, r in (self.item(k) for k in range(first, first + count))]

    def decoded(self, items):
        """(sample or None, error) of one (path, draws) item, computed on this thread."""
        x = np.empty((3, self.recipe.size, self.recipe.size), np.float32)
        error = workers.samples(self.recipe, items, [x])[0]
        return (None, error) if error else (x, None)

    def computed(self, k):
        """(sample or None, error) of file sample ``k``: the slot a worker wrote it into (queuing the
        chunks ahead of it; valid until the batch that reads it is copied), or computed here without
        a pool. Sample k's slot is k % slots of this stream's ring."""
        if self.pool is None:
            return self.decoded(self.file_items(k, 1))
        size, c = self.pool.chunk, k // self.pool.chunk
        if self.current[0] != c:
            for ahead in range(c, c + self.pool.ahead + 1):
                if ahead not in self.chunks:
                    self.chunks[ahead] = self.pool.submit(self.recipe, self.file_items(ahead * size, size), self.ring,
                                                          ahead * size % self.pool.slots)
            try:
                self.current = c, self.chunks.pop(c).result()
            except Exception as e:  # a worker died (BrokenProcessPool), or the pool was closed
                raise Stop('a data worker process stopped ({}); continue with --resume'.format(
                    ' '.join(str(e).split()) or type(e).__name__))
        error = self.current[1][k - c * size]
        return (None, error) if error else (self.pool.rings[self.ring, k % self.pool.slots], None)

    def close(self):
        """Give the ring back once no worker writes into it any more."""
        if self.ring is not None:
            for future in self.chunks.values():
                future.cancel()
            concurrent.futures.wait(list(self.chunks.values()))
            self.pool.release(self.ring)
            self.ring, self.chunks = None, {}
        super().close()

    def replacement(self, index, row, error):
        """(sample, index) of the first image after ``index`` that decodes, with the same draws;
        ``index``'s file is reported once."""
        for step in range(MAX_REPLACED):
            path = self.split.path(index)
            if path not in self.replaced:
                self.replaced.add(path)
                self.report(path, error, len(self.replaced))
            index = (index + 1) % len(self.split)
            x, error = self.decoded([(self.split.path(index), row)])
            if x is not None:
                return x, index
        raise Stop('{} consecutive images of {} cannot be decoded (the last: {}, {})'.format(
            MAX_REPLACED, self.split.root, self.split.path(index), error))

    def batch(self):
        """The next ``local`` samples as one batch (x, y) of their own arrays, computed on this thread."""
        samples = [self.sample(k) for k in range(self.next_sample, self.next_sample + self.local)]
        self.next_sample += self.local
        return np.stack([x for x, _ in samples]), np.stack([y for _, y in samples])


class Batches:
    """nnabla's DataIterator over a Stream, on its own thread: ``next()`` is this rank's next batch,
    or raises what computing it raised."""

    def __init__(self, stream):
        self.stream = stream
        self.iterator = data_iterator(stream, stream.local, with_memory_cache=False, use_thread=True)

    def next(self):
        batch = self.iterator.next()
        if self.stream.error is not None:
            raise self.stream.error
        return batch

    def close(self):
        self.iterator.close()


def training_batches(split, recipe, batch_size, seed, stream=0, start=0, rank=0, size=1, pool=None, report=None):
    """This rank's training batches of the global ``batch_size`` from global sample ``start``."""
    return Batches(Stream(split, recipe, seed, stream, batch_size, rank, size, start, pool=pool, report=report))


def eval_batches(split, recipe, batch_size, rank=0, size=1, pool=None, report=None):
    """Yield this rank's (x, y, n_valid) of the global batches of ``batch_size`` that cover every
    image once, in stored order, made by ``recipe`` without its augmentation; the last one is filled
    up by wrapping around, and only this rank's first ``n_valid`` rows of it are real images."""
    stream = Stream(split, recipe._replace(augment=False), 0, batch_size=batch_size, rank=rank, size=size,
                    shuffle=False, pool=pool, report=report)
    try:
        for first in range(0, len(split), batch_size):
            x, y = stream.batch()
            yield x, y, max(0, min(len(split) - first - rank * stream.local, stream.local))
    finally:
        stream.close()


def fixed_batches(split, recipe, batch_size, count, rank=0, size=1, pool=None):
    """This rank's rows of the first ``count`` test-time batches of ``split`` (the Hessian's probe)."""
    batches = eval_batches(split, recipe, batch_size, rank, size, pool)
    try:
        return [next(batches)[:2] for _ in range(count)]
    finally:
        batches.close()
