"""Worker processes that decode and augment the images of an image folder while the job trains.

The pool is forked once, from the main thread, before any training thread runs (fork needs no
import of the job's script in the workers), and every worker is started at once. The workers
write the samples into shared memory mapped before the fork (rings of sample slots, one per
stream that reads, a batch and the queued chunks long): only the slot numbers and the errors go
through pipes, and the job reads the samples in place, so a sample costs it no copy but the
batch's own (a pickled array cost 2.3 ms for 600 KB at 224 px, a third of the sample itself).
Workers ignore SIGINT and SIGTERM (the job handles both, saves its checkpoint and stops them)
and exit when the job is gone (checked every second: a job killed with -9 leaves no worker
behind). A worker that dies ends the job with one line:
concurrent.futures notices it. A file that cannot be decoded comes back as its error, which
the job reports and replaces (data_iterator.py).
"""
import concurrent.futures
import mmap
import multiprocessing
import os
import signal
import threading
import time

import numpy as np

import images

WATCH_SECONDS = 1.0
CHUNKS_AHEAD = 4  # chunks queued per worker
RINGS = 4         # streams reading at once: a search's two training streams, a test or probe stream, one spare
_rings = None     # in a worker: the shared sample slots, (RINGS, slots, 3, S, S) float32


def default_count(local_ranks=1):
    """--data-workers when not given: the cores of this machine's share of the job, less one for
    the job itself, at least 1 and at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    return max(1, min(8, cores // max(local_ranks, 1) - 1))


def chunk_size(image_size):
    """Samples per task: about 128K pixels (2 at 224 px, 64 at 32 px)."""
    return max(1, min(64, 2 ** 18 // image_size ** 2))


def _start_worker(job, rings):
    """In each worker: the shared slots, the signals left to the job, an exit once ``job`` is gone."""
    global _rings
    _rings = rings
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def watch():
        while os.getppid() == job:
            time.sleep(WATCH_SECONDS)
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


def samples(recipe, items, out=None):
    """The samples of the (path, draws) ``items``, written into ``out`` (arrays or slots), and the
    error line of each item (None when it decoded)."""
    errors = []
    for k, (path, row) in enumerate(items):
        try:
            out[k][...] = images.file_sample(path, recipe, row)
            errors.append(None)
        except Exception as e:  # Pillow raises many kinds for a bad file: all are the file's fault
            errors.append(' '.join('{}: {}'.format(type(e).__name__, e).split()))
    return errors


def _chunk(recipe, items, ring, first):
    """In a worker: ``samples`` into slots ``first``, ``first + 1``, ... of ``ring``."""
    return samples(recipe, items, _rings[ring, first:first + len(items)])


class Pool:
    """``count`` worker processes computing chunks of samples of ``image_size`` pixels into rings of
    shared slots, for batches of ``batch_size`` samples."""

    def __init__(self, count, image_size, batch_size):
        self.count, self.chunk, self.batch_size = count, chunk_size(image_size), batch_size
        self.ahead = CHUNKS_AHEAD * count  # chunks queued ahead of the one a stream reads
        # a slot is written again ahead + 1 chunks after the batch that read it: once the batch is copied
        self.slots = (-(-batch_size // self.chunk) + self.ahead + 1) * self.chunk
        shape = (RINGS, self.slots, 3, image_size, image_size)
        self.memory = mmap.mmap(-1, int(np.prod(shape)) * 4)  # anonymous and shared: inherited by the fork
        self.rings = np.frombuffer(self.memory, np.float32).reshape(shape)
        self.free = list(range(RINGS))
        self.executor = concurrent.futures.ProcessPoolExecutor(
            count, mp_context=multiprocessing.get_context('fork'), initializer=_start_worker,
            initargs=(os.getpid(), self.rings))
        self.executor.submit(os.getpid).result()  # the first submit forks every worker, in this thread

    def acquire(self):
        """A free ring for a stream (released by ``release``)."""
        return self.free.pop(0)

    def release(self, ring):
        self.free.append(ring)

    def submit(self, recipe, items, ring, first):
        """A Future of the errors of ``items``, whose samples go to slots ``first``... of ``ring``."""
        return self.executor.submit(_chunk, recipe, items, ring, first)

    def close(self):
        self.executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
