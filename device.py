"""The nnabla device context of a job (``--context``, ``--device-id``, ``--type-config``).

A GPU context is checked at start-up, quietly: nnabla and its CUDA extension print their own
lines while loading ("GPU compatibility could not be verified ..." on stdout, "[nnabla][ERROR]:
Extension `cudnn` does not exist." on stderr), which would come before, and contradict, the one
line that says what is wrong and what to do.
"""
import contextlib
import importlib
import importlib.util
import os
import re
import sys

import numpy as np
import nnabla as nn
from nnabla.ext_utils import get_extension_context

from errors import UserError

EXTENSION = 'nnabla-ext-cuda120==1.39.0'
# the shared libraries the extension loads, by what they are and how to get them
LIBRARIES = (('libcuda.so', 'the NVIDIA driver', 'install the NVIDIA driver (nvidia-smi must list the GPU)'),
             ('libcudnn', 'cuDNN 8', 'install cuDNN 8 for CUDA 12 and add its lib folder to LD_LIBRARY_PATH'),
             ('libcu', 'the CUDA 12 runtime', 'install the CUDA 12 toolkit (runtime, cuBLAS, cuSOLVER, '
              'cuRAND, cuFFT) and add its lib folder to LD_LIBRARY_PATH'))


@contextlib.contextmanager
def quiet():
    """Send everything written to file descriptors 1 and 2 (C++ and Python alike) to /dev/null."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, 'w') as null:
        try:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def installed(context):
    """Whether nnabla_ext.<context> can be found (without importing it)."""
    try:
        return importlib.util.find_spec('nnabla_ext.' + context) is not None
    except ImportError:
        return False


def load_problem(context, error):
    """The one line for an extension that is installed but does not load: which library is
    missing, named, and how to get it."""
    found = re.search(r'(lib[\w.+-]*\.so[\w.]*)', str(error))
    if found:
        for prefix, what, remedy in LIBRARIES:
            if found.group(1).startswith(prefix):
                return '--context {}: {} is installed but {} ({}) was not found: {}, or use --context cpu'.format(
                    context, EXTENSION.split('==')[0], what, found.group(1), remedy)
    return '--context {}: {} is installed but does not load ({}): check the NVIDIA driver, CUDA 12 and ' \
           'cuDNN 8, or use --context cpu'.format(context, EXTENSION.split('==')[0], first_line(error))


def first_line(error):
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def gpu_context(context, device_id, type_config, deterministic=False):
    """The GPU context, or UserError with the one line that says why not. ``deterministic`` sets
    NNABLA_CUDNN_DETERMINISTIC=1 before the extension loads: cuDNN then uses only deterministic
    algorithms (no atomics), so a run repeats exactly, at some cost in speed."""
    if not installed(context):
        raise UserError('--context {} needs the CUDA extension of nnabla, which is not installed: pip install {} '
                        '(CUDA 12, cuDNN 8, an NVIDIA driver), or use --context cpu'.format(context, EXTENSION))
    if deterministic:
        os.environ['NNABLA_CUDNN_DETERMINISTIC'] = '1'
    with quiet():
        try:
            cuda = importlib.import_module('nnabla_ext.cuda')
            count = cuda.get_device_count()
        except Exception as e:  # ImportError, OSError: a library of CUDA, cuDNN or the driver
            error = e
        else:
            error = None
    if error is not None:
        raise UserError(load_problem(context, error))
    if device_id >= count:
        raise UserError('--device-id {} is out of range: {}'.format(
            device_id, 'the driver finds no GPU here' if count == 0 else
            'this machine has {} GPU{} (--device-id 0 to {})'.format(count, 's' if count > 1 else '', count - 1)))
    with quiet():
        try:
            ctx = get_extension_context(context, device_id=str(device_id), type_config=type_config)
            nn.NdArray.from_numpy_array(np.zeros(1, np.float32)).cast(np.float32, ctx)
        except Exception as e:
            error = e
    if error is not None:
        raise UserError('--context {} --device-id {} does not work ({}): check the GPU with nvidia-smi, or use '
                        '--context cpu'.format(context, device_id, first_line(error)))
    return ctx


def device_context(context, device_id, type_config, deterministic=False):
    """The nnabla context, checked now: a GPU that cannot be used is one clear line, not a traceback.
    The CPU backend is deterministic whatever ``deterministic`` says."""
    if context == 'cpu':
        if type_config == 'half':
            raise UserError('--type-config half needs --context cudnn (the CPU backend computes in float)')
        ctx = get_extension_context('cpu', device_id=str(device_id), type_config=type_config)
    else:
        ctx = gpu_context(context, device_id, type_config, deterministic)
    answer_relative_imports()
    return ctx


def answer_relative_imports():
    """Register nnabla, nnabla.variable, nnabla.functions and the loaded nnabla_ext modules under
    the names nnabla.nnabla, nnabla.nnabla_ext.cpu, ... as well. nnabla 1.39's compiled modules
    import them inside their functions (every array access, every function built) the way
    Python 2 did: relative to the package first, a lookup that fails after searching the
    package's folder, then absolute. Found at once under the relative name, the import gives
    the same module: an array access takes 3.4 us instead of 33, a function built 7.6 us
    instead of 57 (docs/reference.md)."""
    for name, module in list(sys.modules.items()):
        if name in ('nnabla', 'nnabla.variable', 'nnabla.functions') or name.split('.')[0] == 'nnabla_ext':
            sys.modules.setdefault('nnabla.' + name, module)


def float_context(ctx):
    """``ctx`` computing in float (the gradient clip of a half-precision job sums in float)."""
    return nn.Context(backend=[b.split(':')[0] + ':float' for b in ctx.backend], array_class=ctx.array_class,
                      device_id=ctx.device_id)
