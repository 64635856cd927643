"""The first training step of darts_train.py on the GPU against the CPU, on the same weights and
the same batch: one JSON line with both losses and global gradient norms and their relative
differences. Run by benchmarks/gpu_check.sh; takes darts_train.py's model flags:

    python benchmarks/first_loss.py --context cudnn [--type-config half] --model-arch-name DARTS_V2 \\
        --num-cells 8 --output-filter 16 -f 0 --batch-size 32

Both graphs are built in one process on the same parameters (nnabla keeps one copy per name and
moves it between host and device), with BN on batch statistics, the aux head and no drop path.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnabla as nn  # noqa: E402

import darts_train  # noqa: E402
import genotype  # noqa: E402
import model_eval  # noqa: E402
from args import TRAIN, parse, space_of  # noqa: E402
from device import device_context  # noqa: E402
from errors import run  # noqa: E402
from numerics import LossScaler  # noqa: E402
from tasks.classification import CIFAR10  # noqa: E402


def loss_and_grad_norm(train, params, batch, scaler):
    """Training objective and the global norm of the unscaled weight gradients of ``batch``."""
    train['x'].d, train['y'].d = batch
    train['drop_path'].refresh(np.random.RandomState(0), 0.0)
    train['loss'].forward(clear_no_need_grad=True)
    for p in params.values():
        p.grad.zero()
    scaler.backward(train['loss'])
    grads = np.concatenate([p.g.ravel().astype(np.float64) for p in params.values()]) / scaler.scale
    return float(train['loss'].d), float(np.sqrt((grads ** 2).sum()))


def main(argv=None):
    args = parse(TRAIN, sys.argv[1:] if argv is None else argv)
    space = space_of(args)
    arch = genotype.load(args.model_arch_name, space)
    gpu = device_context(args.context, args.device_id, args.type_config, args.deterministic)
    cpu = device_context('cpu', 0, 'float')
    nn.seed(args.seed)
    rng = np.random.RandomState(args.seed)
    batch = (rng.randn(args.batch_size, 3, 32, 32).astype(np.float32), rng.randint(0, 10, (args.batch_size, 1)))
    result = {}
    for name, ctx, half in (('gpu', gpu, args.type_config == 'half'), ('cpu', cpu, False)):
        with nn.context_scope(ctx):
            # the second build reuses the first's parameters
            train = model_eval.build(space, arch, darts_train.network_of(args, CIFAR10), args.batch_size,
                                     args.label_smoothing, args.auxiliary_weight)
            params = nn.get_parameters(grad_only=True)
            result[name + '_loss'], result[name + '_grad_norm'] = loss_and_grad_norm(
                train, params, batch, LossScaler(half))
    for key in ('loss', 'grad_norm'):
        result[key + '_rel_diff'] = abs(result['gpu_' + key] - result['cpu_' + key]) / abs(result['cpu_' + key])
    result.update(context=args.context, type_config=args.type_config, batch_size=args.batch_size)
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
