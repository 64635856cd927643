"""Files that carry a trained network out of a job: its parameters without the aux head, and
the inference network as nnabla's .nnp (input: normalised 3x32x32 images, output: logits)."""
import os

import nnabla as nn
from nnabla.utils.save import save

import checkpoint


def inference_parameters():
    """The built network's parameters (BN statistics included) without the aux head's."""
    return {k: v for k, v in nn.get_parameters(grad_only=False).items() if not k.startswith('aux/')}


def load_into_network(path):
    """Copy saved parameters (a checkpoint folder or a .h5 file) into the built network in place."""
    file = os.path.join(path, 'params.h5') if os.path.isdir(path) else path
    checkpoint.load_parameters_into(inference_parameters(), file, path)


def save_nnp(path, x, logits):
    """Write the inference graph from ``x`` to ``logits`` with the current parameters as .nnp."""
    save(path, {'networks': [{'name': 'darts', 'batch_size': x.shape[0], 'outputs': {'y': logits},
                              'names': {'x': x}}],
                'executors': [{'name': 'inference', 'network': 'darts', 'data': ['x'], 'output': ['y']}]},
         parameters=inference_parameters())
