"""Data parallelism over the processes of ``mpirun -n N``: the one interface the jobs use.

Every rank builds the network at B/N and takes its contiguous rows of the global batch of B that
a single process would see; the gradients (and BN's running statistics) are averaged over the
ranks after every backward, so all ranks hold the same parameters at all times. Three engines:

- ``Single``: one process (no mpirun, or N = 1). Does nothing and imports no mpi4py.
- ``Mpi``: ``--context cpu`` under mpirun: one MPI all-reduce of one flat numpy buffer.
- ``Nccl``: ``--context cudnn`` under mpirun: nnabla's ``MultiProcessDataParalellCommunicator``
  (NCCL) for the arrays, each rank on the GPU of its local rank; MPI for the few floats.

The small reductions (logged values, the stop flag, the startup agreement on errors) are MPI
calls in both multi-process engines.
"""
import os

import numpy as np

SIZE_VARIABLES = ('OMPI_COMM_WORLD_SIZE', 'PMI_SIZE')  # Open MPI; MPICH and Intel MPI
LOCAL_RANK_VARIABLES = ('OMPI_COMM_WORLD_LOCAL_RANK', 'MPI_LOCALRANKID', 'PMI_LOCAL_RANK')
LOCAL_SIZE_VARIABLES = ('OMPI_COMM_WORLD_LOCAL_SIZE', 'MPI_LOCALNRANKS')
THREAD_VARIABLES = ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS')  # a user's own choice


def environment_number(names, default):
    """The first of the environment variables ``names`` that holds a number, else ``default``."""
    for name in names:
        if os.environ.get(name, '').isdigit():
            return int(os.environ[name])
    return default


def launched_size():
    """N of ``mpirun -n N`` from the launcher's environment (1 without mpirun), read without MPI."""
    return environment_number(SIZE_VARIABLES, 1)


def local_rank():
    """This process's index among the ranks of its machine (its GPU with --context cudnn)."""
    return environment_number(LOCAL_RANK_VARIABLES, 0)


def local_size():
    """How many ranks of the job share this machine (all of them where the launcher does not say)."""
    return environment_number(LOCAL_SIZE_VARIABLES, launched_size())


def share_the_cores(ranks_here):
    """Limit numpy's BLAS (the recurrent graphs' products, numpy_functions.py) to this rank's share
    of the cores it may run on, unless a variable of THREAD_VARIABLES chose; returns the threads
    (None: left alone). Otherwise OpenBLAS starts a thread per core in every rank, and its
    waiting threads spin on the cores the other ranks compute on (docs/parallel.md)."""
    if any(name in os.environ for name in THREAD_VARIABLES):
        return None
    from threadpoolctl import threadpool_limits  # only under mpirun
    threads = max(1, len(os.sched_getaffinity(0)) // ranks_here)
    threadpool_limits(threads, user_api='blas')
    return threads


class Single:
    """One process: every reduction is the identity and every rank-0 decision is yes."""
    rank, size = 0, 1

    @property
    def is_main(self):
        """Whether this rank writes files and prints (rank 0)."""
        return self.rank == 0

    def rows(self, global_rows):
        """This rank's contiguous share of a global batch of ``global_rows`` rows (a slice)."""
        share = global_rows // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def shard(self, batch):
        """This rank's rows of each array of a global ``batch``."""
        return tuple(a[self.rows(len(a))] for a in batch)

    def say(self, text):
        """Print ``text`` on stdout once: on rank 0."""
        if self.is_main:
            print(text)

    def device_id(self, requested):
        """The GPU of this rank: --device-id alone, or the local rank under mpirun."""
        return requested

    def all_reduce_mean(self, arrays):
        """Replace each nnabla NdArray of ``arrays`` by its mean over the ranks, in place."""

    def joined_rows(self, array, rows):
        """The numpy ``array`` of global rows in which every rank wrote its own ``rows`` (a slice
        of rows, as ``rows`` gives), the same on every rank; the other rows are ignored."""
        return array

    def sum_floats(self, values):
        """The sums over the ranks of a few floats."""
        return [float(v) for v in values]

    def mean_values(self, values):
        """{name: mean over the ranks} of a {name: float} dict (the logged losses and errors)."""
        names = list(values)  # the same order on every rank
        sums = self.sum_floats([values[k] for k in names])
        return {k: s / self.size for k, s in zip(names, sums)}

    def max_int(self, value):
        """The largest of an int over the ranks (the stop flag: a signal number or 0)."""
        return value

    def agree(self, message=None):
        """The startup agreement on errors, called once by every rank: with the message of its
        error by a rank that failed, with None by a rank ready to train. Returns the first
        rank's message (None if no rank failed); ``agreed`` is then true."""
        self.agreed = True
        return message

    agreed = False


class Mpi(Single):
    """--context cpu under mpirun: MPI through mpi4py, one flat float32 buffer per all-reduce."""

    def __init__(self):
        from mpi4py import MPI  # only under mpirun
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.blas_threads = share_the_cores(local_size())

    def all_reduce_mean(self, arrays):
        views = [a.data for a in arrays]
        flat = np.concatenate([v.ravel() for v in views]).astype(np.float32, copy=False)
        self.sum_in_place(flat)
        flat /= self.size
        start = 0
        for a, v in zip(arrays, views):
            a.data = flat[start:start + v.size].reshape(v.shape)  # NdArray.data = copies into it
            start += v.size

    def joined_rows(self, array, rows):
        own = np.zeros(array.shape, np.float32)
        own[rows] = array[rows]
        self.sum_in_place(own)  # one rank's rows plus zeros: exact
        return own

    def sum_in_place(self, buffer):
        """Sum ``buffer`` over the ranks, the same bits on every rank: one all-reduce for two
        ranks (a + b == b + a), a reduction on rank 0 then a broadcast for more (the order of
        an all-reduce's additions may differ between ranks)."""
        if self.size == 2:
            self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        else:
            self.comm.Reduce(self.MPI.IN_PLACE if self.is_main else buffer, buffer, op=self.MPI.SUM, root=0)
            self.comm.Bcast(buffer, root=0)

    def sum_floats(self, values):
        buffer = np.array(values, dtype=np.float64)
        self.sum_in_place(buffer)
        return buffer.tolist()

    def max_int(self, value):
        return self.comm.allreduce(int(value), op=self.MPI.MAX)

    def agree(self, message=None):
        self.agreed = True
        return next((m for m in self.comm.allgather(message) if m is not None), None)


class Nccl(Mpi):
    """--context cudnn under mpirun: nnabla's NCCL communicator for the arrays (built on the
    first reduction, in the device context of this rank's GPU), MPI for the floats."""
    communicator = None

    def device_id(self, requested):
        return local_rank()

    def all_reduce_mean(self, arrays):
        if self.communicator is None:
            self.communicator = nccl_communicator()
        self.communicator.all_reduce(list(arrays), division=True, inplace=True)


class Unavailable(Exception):
    """The engine cannot run here (no NCCL): one line and exit code 2 (errors.run)."""


def nccl_communicator():
    """nnabla's NCCL communicator in the current context, or one line saying what is missing."""
    import nnabla as nn
    try:
        import nnabla.communicators as C
        communicator = C.MultiProcessDataParalellCommunicator(nn.get_current_context())
        communicator.init()
    except Exception as e:  # no NCCL library, or an nnabla-ext-cuda built without it
        raise Unavailable('--context cudnn under mpirun needs NCCL 2 (NVIDIA\'s libnccl2) and MPI next to '
                          'nnabla-ext-cuda120 (docs/parallel.md): {}'.format(
                              str(e).splitlines()[0] if str(e) else type(e).__name__))
    return communicator


_world = Single()


def start(context):
    """Choose this job's engine (once, in main(), before the device context is made)."""
    global _world
    if launched_size() > 1:
        _world = Nccl() if context == 'cudnn' else Mpi()
    return _world


def world():
    """This job's engine (``Single`` until ``start`` chose another)."""
    return _world


def grad_reducer(params, buffers=None):
    """A callable averaging over the ranks the gradients of ``params`` and the data of ``buffers``
    (both name -> Variable; the buffers: BN's running statistics, numerics.running_statistics), all in one
    reduction; None for one process (the steps then skip it: a single process does exactly what it
    did before)."""
    if _world.size == 1:
        return None
    arrays = [p.grad for p in params.values()] + [p.data for p in (buffers or {}).values()]
    return lambda: _world.all_reduce_mean(arrays)
