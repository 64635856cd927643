"""Images per second of the training pipeline of an image folder: decoding, the random-resized crop
to 224 px, flip, colour jitter and normalisation, in 0 (the iterator's thread), 1, 2, ... data
worker processes. One JSON line per worker count.

    python benchmarks/pipeline.py [--workers 1 2] [--images 384] [--batch 64] [--size 224] [--folder DIR]

Without --folder it writes --images JPEGs of ImageNet's typical size (500x375, quality 90, a smooth
random scene with noise, about 110 KB each like ImageNet's) into a temporary folder, split over
two classes. Batches are taken as the retraining takes them (data_iterator.training_batches, the
recipe of --dataset imagenet), after one untimed batch; nothing else runs in the job. Each worker
count is timed --repeats times, in turn with the others; the median is reported (a shared
machine's speed varies by 10 % from run to run).
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import datasets  # noqa: E402
import images  # noqa: E402
import workers  # noqa: E402
from data_iterator import training_batches  # noqa: E402

IMAGENET_SIZE = (500, 375)
JITTER = (0.4, 0.4, 0.4, 0.2)
NOISE = 26  # the noise of the written scenes: about 110 KB a JPEG


def photo(rng, size=IMAGENET_SIZE):
    """A JPEG-like scene: a low-resolution random image enlarged (smooth regions and edges) with noise."""
    small = Image.fromarray(rng.randint(0, 256, (12, 16, 3)).astype(np.uint8))
    pixels = np.asarray(small.resize(size, Image.BICUBIC), np.float32) + rng.normal(0, NOISE, (size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_photos(root, count, seed=0):
    """``count`` JPEGs under root/train/{a,b}/ (and one in each val/ class); their mean size in KB."""
    rng = np.random.RandomState(seed)
    sizes = []
    for split, n in (('train', count), ('val', 2)):
        for k in range(n):
            folder = os.path.join(root, split, 'ab'[k % 2])
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, '{:05d}.jpg'.format(k))
            photo(rng).save(path, quality=90)
            sizes.append(os.path.getsize(path))
    return float(np.mean(sizes)) / 1024


def images_per_second(split, recipe, batch, count, batches):
    """Images per second of ``batches`` training batches (after one) computed by ``count`` workers."""
    with workers.Pool(count, recipe.size, batch) if count else contextlib.nullcontext() as pool:
        iterator = training_batches(split, recipe, batch, seed=0, pool=pool)
        try:
            iterator.next()
            start = time.perf_counter()
            for _ in range(batches):
                iterator.next()
            return batches * batch / (time.perf_counter() - start)
        finally:
            iterator.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--workers', type=int, nargs='+', default=[1, 2], help='worker counts to time (0: no pool)')
    p.add_argument('--images', type=int, default=384, help='JPEGs to write (without --folder)')
    p.add_argument('--batch', type=int, default=64, help='batch size')
    p.add_argument('--batches', type=int, default=20, help='timed batches')
    p.add_argument('--repeats', type=int, default=3, help='timings of each worker count (the median is reported)')
    p.add_argument('--size', type=int, default=224, help='crop size')
    p.add_argument('--folder', default=None, help='an image folder to read instead (train/<class>/*, val/...)')
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        kb = None
        if args.folder is None:
            args.folder, kb = scratch, write_photos(scratch, args.images)
        data = datasets.load('folder', args.folder, args.size)
        recipe = images.Recipe(args.size, 'resized', True, 0, JITTER, data.mean, data.std)
        runs = {count: [] for count in args.workers}
        for _ in range(args.repeats):
            for count in args.workers:
                runs[count].append(images_per_second(data.train, recipe, args.batch, count, args.batches))
    rates = {count: float(np.median(r)) for count, r in runs.items()}
    for count, rate in rates.items():
        print(json.dumps(dict(workers=count, images_per_second=round(rate, 1), runs=[round(r, 1) for r in runs[count]],
                              per_worker=round(rate / count, 1) if count else None,
                              speedup_over_1=round(rate / rates[1], 2) if 1 in rates else None, size=args.size,
                              mean_jpeg_kb=round(kb, 1) if kb else None, cores=len(os.sched_getaffinity(0)))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
