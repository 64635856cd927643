"""DARTS-ES (Zela et al., ICLR 2020): end the search once the dominant Hessian eigenvalue of the
alphas has grown too much, and keep the architecture of an epoch before the growth.

The rule and its defaults are those of the authors' code, automl/RobustDARTS: class
``EVLocalAvg`` (``update`` and ``early_stop``) in ``src/utils.py``, with the defaults of
``src/search/args.py`` (``--window 5 --delta 4 --factor 1.3 --es_start_epoch 10``):

- after each evaluation of the eigenvalue (every ``every`` epochs, epochs counted from 0), once
  there are at least ceil(window / 2) of them, the local average is the mean of the last
  ``window`` eigenvalues (of all of them while fewer); it stands for the epoch at the centre of
  its window, ``every * (window // 2)`` epochs before the current one;
- the search stops when the newest local average exceeds ``factor`` times the one ``delta``
  evaluations earlier, that earlier one's epoch being at least ``start_epoch``; the
  architecture returned is the one derived at the end of that earlier epoch;
- no decision is taken at the last epoch (the search ends anyway).
"""
import math

import numpy as np

WINDOW = 5         # eigenvalues per local average
DELTA = 4          # how many evaluations back the local average is compared with
FACTOR = 1.3       # stop when the ratio of the two local averages exceeds this
START_EPOCH = 10   # never return an epoch before this one (counted from 0)


def local_averages(values, window=WINDOW):
    """The local averages after evaluations ceil(window/2), ..., len(values): the mean of the last
    ``window`` values, or of all of them while there are fewer."""
    first = int(math.ceil(window / 2))
    return [float(np.mean(values[max(0, n - window):n])) for n in range(first, len(values) + 1)]


def decide(history, every, window=WINDOW, delta=DELTA, factor=FACTOR, start_epoch=START_EPOCH):
    """None to go on, or (epoch to return, ratio of the local averages) to stop. ``history`` holds
    the (epoch from 0, eigenvalue) pairs of the evaluations so far, the newest last, taken every
    ``every`` epochs from epoch 0."""
    if len(history) < int(math.ceil(window / 2)):
        return None
    centre = history[-1][0] - every * (window // 2)
    earlier = centre - every * delta
    if earlier < start_epoch:
        return None
    averages = local_averages([value for _, value in history], window)
    if averages[-1 - delta] == 0:
        return None
    ratio = averages[-1] / averages[-1 - delta]
    return (earlier, ratio) if ratio > factor else None
