"""device.py: a GPU context that cannot be used is one line saying which problem it is (the
extension missing; a library of the driver, CUDA or cuDNN missing; a device id out of range) and
its remedy, with nnabla's own start-up lines kept out of the output."""
import subprocess
import sys
import types

import pytest

import device
from helpers import ROOT
from errors import UserError


def refusal(*args):
    with pytest.raises(UserError) as e:
        device.device_context(*args)
    return str(e.value)


@pytest.mark.skipif(device.installed('cudnn'), reason='a CUDA extension is installed here')
def test_a_missing_extension_says_how_to_install_it():
    line = refusal('cudnn', 0, 'float')
    assert 'not installed' in line and 'pip install nnabla-ext-cuda120==1.39.0' in line
    assert '--context cpu' in line


@pytest.mark.parametrize('message, names', [
    ('libcuda.so.1: cannot open shared object file: No such file or directory',
     ['NVIDIA driver (libcuda.so.1)', 'nvidia-smi']),
    ('libcudart.so.12: cannot open shared object file: No such file or directory',
     ['CUDA 12 runtime (libcudart.so.12)', 'LD_LIBRARY_PATH']),
    ('libcublas.so.12: cannot open shared object file', ['CUDA 12 runtime (libcublas.so.12)']),
    ('libcudnn.so.8: cannot open shared object file: No such file or directory',
     ['cuDNN 8 (libcudnn.so.8)', 'install cuDNN 8']),
    ('something else\nand more', ['does not load (something else)'])])
def test_a_missing_library_is_named_with_its_remedy(message, names):
    line = device.load_problem('cudnn', OSError(message))
    assert 'nnabla-ext-cuda120 is installed' in line and 'not installed' not in line and '\n' not in line
    assert all(n in line for n in names), line


@pytest.mark.parametrize('count, device_id, says', [
    (2, 2, 'this machine has 2 GPUs (--device-id 0 to 1)'), (1, 1, 'this machine has 1 GPU (--device-id 0 to 0)'),
    (0, 0, 'the driver finds no GPU here')])
def test_a_device_id_out_of_range_says_which_exist(monkeypatch, count, device_id, says):
    monkeypatch.setattr(device, 'installed', lambda context: True)
    monkeypatch.setitem(sys.modules, 'nnabla_ext.cuda', types.SimpleNamespace(get_device_count=lambda: count))
    assert refusal('cudnn', device_id, 'float') == '--device-id {} is out of range: {}'.format(device_id, says)


def test_nnabla_lines_are_kept_out_of_the_output():
    """The job's output is the project's one line only, whatever the extension prints while loading."""
    probe = ('import os, sys, device\n'
             'with device.quiet():\n'
             '    print("on stdout", flush=True)\n'
             '    os.write(2, b"[nnabla][ERROR]: on fd 2\\n")\n'
             '    sys.stderr.write("on stderr\\n")\n'
             'print("after")\n')
    proc = subprocess.run([sys.executable, '-c', probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (proc.stdout, proc.stderr) == ('after\n', '')
    proc = subprocess.run([sys.executable, 'darts_train.py', '--context', 'cudnn', '--model-arch-name', 'DARTS_V2'],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ''
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith('error: --context cudnn')


@pytest.mark.parametrize('flag', ['True', 'False'])
def test_deterministic_sets_cudnns_deterministic_mode_before_the_extension_loads(monkeypatch, flag):
    from args import TRAIN, parse
    args = parse(TRAIN, ['--context', 'cudnn', '--deterministic', flag])
    monkeypatch.delenv('NNABLA_CUDNN_DETERMINISTIC', raising=False)
    monkeypatch.setattr(device, 'installed', lambda context: True)
    seen = []

    def count():  # what the extension sees as it loads
        seen.append(device.os.environ.get('NNABLA_CUDNN_DETERMINISTIC'))
        return 0
    monkeypatch.setitem(sys.modules, 'nnabla_ext.cuda', types.SimpleNamespace(get_device_count=count))
    refusal(args.context, args.device_id, args.type_config, args.deterministic)
    assert seen == (['1'] if flag == 'True' else [None])


COUNT_LOOKUPS = '''
import sys
import numpy as np
import nnabla as nn
import nnabla.functions as F
import device
missed = []
sys.addaudithook(lambda event, args: missed.append(args[0]) if event == 'import' else None)
def lookups():
    del missed[:]
    x = nn.Variable.from_numpy_array(np.ones((2, 3), np.float32))
    for _ in range(10):
        x.data.get_data('r')
        F.add2(x, x)
    return len(missed)
before = lookups()
device.device_context('cpu', 0, 'float')
print(before, lookups(), sys.modules['nnabla.nnabla_ext.cpu'] is sys.modules['nnabla_ext.cpu'])
'''


def test_the_context_answers_nnabla_s_relative_imports_at_once():
    """nnabla 1.39 looks up nnabla.nnabla_ext.cpu, nnabla.nnabla, ... at every array access and
    function built (then finds them absolutely); after device_context none is looked up, and the
    relative name holds the same module. (If ``before`` is 0, nnabla no longer does it and
    answer_relative_imports can go.)"""
    res = subprocess.run([sys.executable, '-c', COUNT_LOOKUPS], cwd=ROOT, capture_output=True, text=True)
    before, after, same = res.stdout.split()
    assert int(before) >= 30 and int(after) == 0 and same == 'True', res.stdout + res.stderr
