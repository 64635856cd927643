"""Files that carry a trained network out of a job: its parameters without the aux head, and
the inference network as nnabla's .nnp (input: normalised 3xSxS images, S the --image-size of the
run, output: logits), and
the same network as ONNX when the optional export dependencies are installed (imported only here,
only when an ONNX file is written)."""
import contextlib
import importlib.util
import io
import os
import tempfile

import nnabla as nn
from nnabla.utils.save import save

import checkpoint
import files


def inference_parameters():
    """The built network's parameters (BN statistics included) without the aux head's."""
    return {k: v for k, v in nn.get_parameters(grad_only=False).items() if not k.startswith('aux/')}


def load_into_network(path):
    """Copy saved parameters (a checkpoint folder or a .h5 file) into the built network in place."""
    file = os.path.join(path, 'params.h5') if os.path.isdir(path) else path
    checkpoint.load_parameters_into(inference_parameters(), file, path)


def save_nnp(path, x, logits):
    """Write the inference graph from ``x`` to ``logits`` with the current parameters as .nnp (its
    folder made if missing, as files.check_output allows)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save(path, {'networks': [{'name': 'darts', 'batch_size': x.shape[0], 'outputs': {'y': logits},
                              'names': {'x': x}}],
                'executors': [{'name': 'inference', 'network': 'darts', 'data': ['x'], 'output': ['y']}]},
         parameters=inference_parameters())


# nnabla-converter's 'tensorrt' table writes ONNX opset 11 and the only one of its tables that exports
# nnabla's average pooling without the padding (count_include_pad=0); its default table pads the
# input by edge replication instead, which changes the logits of a cell with avg_pool_3x3.
ONNX_TABLE = 'tensorrt'
ONNX_DEPENDENCIES = ('onnx', 'nnabla.utils.converter.onnx')
BATCH = 'batch'  # the symbolic name of the ONNX file's batch dimension
CONVERTED_BATCH = 7  # the batch the converter writes, made symbolic after: not 1, which every shape holds


def onnx_export_available():
    """Whether the optional export dependencies (requirements-export.txt) are installed, found
    without importing them: the training paths must not load them."""
    return all(importlib.util.find_spec(name) is not None for name in ONNX_DEPENDENCIES)


def any_batch(model, batch_size):
    """Make ``model``'s batch dimension symbolic: the graph's input and output dims 0 become
    BATCH, and each reshape of an activation (the one before the classifier) keeps its input's
    batch (0 in ONNX's Reshape) instead of the ``batch_size`` the converter wrote into its shape."""
    from onnx import numpy_helper
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH
    del model.graph.value_info[:]  # intermediate shapes, if the converter wrote any, hold the fixed batch
    initializers = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == 'Reshape' and node.input[0] not in initializers:
            shape = numpy_helper.to_array(initializers[node.input[1]]).copy()
            if shape[0] != batch_size:
                raise ValueError('ONNX reshape {} does not keep the batch first: {}'.format(node.name, shape))
            shape[0] = 0
            initializers[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))


def nnp_to_onnx(nnp_path, onnx_path, table=ONNX_TABLE):
    """Convert the .nnp of save_nnp into ONNX (opset 11, any batch size) through nnabla-converter's
    Python API with its op ``table`` (another than ONNX_TABLE only to show the trap in the tests),
    checked by onnx's checker, written atomically."""
    import onnx
    from nnabla.utils.converter.nnabla import NnpImporter
    from nnabla.utils.converter.onnx import OnnxExporter
    with contextlib.redirect_stdout(io.StringIO()):  # the importer prints its progress
        nnp = NnpImporter(nnp_path, expand_network=True, executor_index=None).execute()
    model = OnnxExporter(nnp, CONVERTED_BATCH, -1, opset=table).export_model_proto()
    any_batch(model, CONVERTED_BATCH)
    onnx.checker.check_model(model)
    files.write_atomic(onnx_path, lambda f: f.write(model.SerializeToString()), 'wb')


def save_onnx(path, x, logits):
    """Write the inference graph from ``x`` to ``logits`` with the current parameters as ONNX
    (through a temporary .nnp, the converter's input)."""
    with tempfile.TemporaryDirectory() as folder:
        nnp = os.path.join(folder, 'model.nnp')
        save_nnp(nnp, x, logits)
        nnp_to_onnx(nnp, path)
