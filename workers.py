"""Worker processes that decode and augment the images of an image folder while the job trains.

The pool is forked once, from the main thread, before any training thread runs (fork needs no
import of the job's script in the workers and shares the file lists); every worker is started at
once. Workers ignore SIGINT and SIGTERM (the job handles both, saves its checkpoint and stops
them) and exit when the job is gone (checked every second: a job killed with -9 leaves no
worker behind). A worker that dies ends the job with one line: concurrent.futures notices it.
Each task is a chunk of consecutive samples; a file that cannot be decoded comes back as its
error, which the job reports and replaces (data_iterator.py).
"""
import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time

import images

WATCH_SECONDS = 1.0


def default_count(local_ranks=1):
    """--data-workers when not given: the cores of this machine's share of the job, less one for
    the job itself, at least 1 and at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    return max(1, min(8, cores // max(local_ranks, 1) - 1))


def _start_worker(job):
    """In each worker: leave the signals to the job, and exit once the job ``job`` is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def watch():
        while os.getppid() == job:
            time.sleep(WATCH_SECONDS)
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


def _samples(recipe, items):
    """[(float32 sample or None, error line or None)] of the (path, draws) ``items``."""
    out = []
    for path, row in items:
        try:
            out.append((images.file_sample(path, recipe, row), None))
        except Exception as e:  # Pillow raises many kinds for a bad file: all are the file's fault
            out.append((None, ' '.join('{}: {}'.format(type(e).__name__, e).split())))
    return out


class Pool:
    """``count`` worker processes computing chunks of file samples."""

    def __init__(self, count):
        self.count = count
        self.executor = concurrent.futures.ProcessPoolExecutor(
            count, mp_context=multiprocessing.get_context('fork'), initializer=_start_worker,
            initargs=(os.getpid(),))
        self.executor.submit(os.getpid).result()  # the first submit forks every worker, in this thread

    def submit(self, recipe, items):
        """A Future of ``_samples(recipe, items)``."""
        return self.executor.submit(_samples, recipe, items)

    def close(self):
        self.executor.shutdown(wait=True, cancel_futures=True)


def compute(recipe, items):
    """What a worker computes, in this process (no pool)."""
    return _samples(recipe, items)
