"""The nnabla device context of a job (``--context``, ``--device-id``, ``--type-config``)."""
import numpy as np
import nnabla as nn
from nnabla.ext_utils import get_extension_context

from errors import UserError


def device_context(context, device_id, type_config):
    """The nnabla context, checked now: a missing CUDA extension is one clear line, not a traceback."""
    if context == 'cpu' and type_config == 'half':
        raise UserError('--type-config half needs --context cudnn (the CPU backend computes in float)')
    try:
        ctx = get_extension_context(context, device_id=str(device_id), type_config=type_config)
        nn.NdArray.from_numpy_array(np.zeros(1, np.float32)).cast(np.float32, ctx)
    except Exception as e:  # ImportError, OSError from a missing CUDA runtime, a bad device id
        raise UserError('--context {} is unavailable here ({}): use --context cpu, or install '
                        'nnabla-ext-cuda120 (needs CUDA 12 and cuDNN 8)'.format(
                            context, str(e).splitlines()[0] if str(e) else type(e).__name__))
    return ctx


def float_context(ctx):
    """``ctx`` computing in float (the gradient clip of a half-precision job sums in float)."""
    return nn.Context(backend=[b.split(':')[0] + ':float' for b in ctx.backend], array_class=ctx.array_class,
                      device_id=ctx.device_id)
