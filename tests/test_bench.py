"""benchmarks/bench.py as a user runs it: one JSON line about the scripts' own steps."""
import importlib.util
import json
import re

import pytest

from helpers import ROOT, run_cli, train


def bench(*argv):
    return run_cli('benchmarks/bench.py', argv)


def summary_count(*flags):
    """The trainable-parameter count darts_train.py --summary-only prints for ``flags``."""
    return int(re.search(r'trainable parameters: (\d+)', train('--summary-only', *flags).stdout).group(1))


@pytest.mark.parametrize('order', ['False', 'True'])
def test_search_step_is_timed_and_profiled(order):
    proc = bench('search', '--num-cells', 2, '--output-filter', 2, '--num-nodes', 4, '--batch-size', 2,
                 '--steps', 3, '--second-order', order, '--profile', 'True')
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['mode'] == 'search' and result['second_order'] == (order == 'True')
    assert len(result['step_times']) == 3 and result['sec_per_step'] == sorted(result['step_times'])[1]
    assert result['peak_rss_mb'] > 50 and result['parameters'] > 0
    assert isinstance(result['functions_per_step'], int) and result['functions_per_step'] > 100
    shares = result['profile']
    assert 0 < shares['kernels'] < 1 and shares['convolution'] > 0 and shares['batch norm'] > 0
    assert shares['kernels'] + shares['other functions'] + shares['outside functions (solvers, Python, data wait)'] \
        == pytest.approx(1, abs=2e-3)


def test_train_step_counts_the_parameters_of_the_summary():
    flags = ['--model-arch-name', 'DARTS_V2', '--num-cells', '3', '--output-filter', '4', '-f', '0']
    proc = bench('train', *flags, '--batch-size', 2, '--steps', 1)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['mode'] == 'train' and len(result['step_times']) == 1 and 'profile' not in result
    assert result['parameters'] == summary_count(*flags)


def test_the_recurrent_steps_are_timed_with_the_summary_s_parameters():
    tiny = ('--dataset', 'ptb', '--embedding-size', 4, '--hidden-size', 4, '--batch-size', 2, '--bptt', 3, '--steps', 1)
    search = json.loads(bench('search', *tiny).stdout.strip().splitlines()[-1])
    assert search['parameters'] == 10000 * 4 + 8 * 8 + 8 * 4 * 8 + 10000 and search['tokens_per_sec'] > 0
    retrain = json.loads(bench('train', '--model-arch-name', 'DARTS_V2', *tiny).stdout.strip().splitlines()[-1])
    summary = run_cli('darts_train.py', ['--dataset', 'ptb', '--model-arch-name', 'DARTS_V2', '--summary-only',
                                         '--embedding-size', '4', '--hidden-size', '4'])
    assert 'parameters: {}'.format(retrain['parameters']) in summary.stdout


def test_a_bad_flag_is_one_line():
    proc = bench('train', '--model-arch-name', 'no_such_arch.json')
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        'error: cannot read arch file no_such_arch.json: it does not exist']


def test_first_loss_compares_two_contexts_on_the_same_weights_and_batch():
    """benchmarks/first_loss.py (gpu_check.sh's GPU-against-CPU check), run here with the CPU on both
    sides: the same weights and batch give exactly the same loss and gradient norm."""
    proc = run_cli('benchmarks/first_loss.py', ['--context', 'cpu', '--model-arch-name', 'DARTS_V2', '--num-cells',
                                                '3', '--output-filter', '4', '-f', '0', '--batch-size', '2'])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['gpu_loss'] == result['cpu_loss'] > 0 and result['gpu_grad_norm'] == result['cpu_grad_norm'] > 0
    assert result['loss_rel_diff'] == result['grad_norm_rel_diff'] == 0


def load_benchmark(name):
    """A script of benchmarks/ as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, '{}/benchmarks/{}.py'.format(ROOT, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('type_config, size', [('float', 4), ('half', 2)])
def test_gpu_memory_counts_every_output_once_and_reshapes_as_nothing(fresh_parameters, type_config, size):
    import nnabla as nn
    import nnabla.functions as F
    import nnabla.parametric_functions as PF
    gpu_memory = load_benchmark('gpu_memory')
    x = nn.Variable((2, 3, 8, 8))
    with nn.context_scope(gpu_memory.context(type_config)):
        h = PF.convolution(x, 4, (3, 3), pad=(1, 1))   # 2*4*8*8 = 512 values, needing gradients
        y = F.relu(F.reshape(h, (2, 256)))              # the reshape shares h's buffer; 512 more
        z = F.identity(nn.Variable((2, 256)))           # no gradient through it
    assert gpu_memory.buffers(y) == (1024 * size, 1024 * size)
    assert gpu_memory.buffers(z) == (512 * size, 0)


def test_the_v100_bound_of_a_hand_sized_graph(fresh_parameters):
    import nnabla as nn
    import nnabla.functions as F
    import nnabla.parametric_functions as PF
    gpu_memory = load_benchmark('gpu_memory')
    with nn.context_scope(gpu_memory.context('float')):
        y = F.relu(PF.convolution(nn.Variable((2, 3, 8, 8)), 4, (3, 3), pad=(1, 1), with_bias=False))
    # the conv moves x, W and its output (384 + 108 + 512 floats), 2*512*27 flops: bandwidth-bound, as is the
    # ReLU (512 in, 512 out); each three times (forward, backward), and 4 launches
    expected = 3 * 4 * (384 + 108 + 512 + 512 + 512) / 900e9 + 4 * 4e-6
    assert gpu_memory.step_bound(y, 'float') == pytest.approx(expected, rel=1e-9)


def test_gpu_memory_script_reports_the_paper_sizes():
    proc = run_cli('benchmarks/gpu_memory.py', [])
    assert proc.returncode == 0, proc.stderr
    search, float_, half, imagenet_float, imagenet_half = (json.loads(line) for line in proc.stdout.strip().splitlines())
    for r in (search, float_, half, imagenet_float, imagenet_half):
        assert abs(r['low_mb'] - (r['parameters_mb'] + r['activations_mb'])) <= 1  # sums of rounded parts
        assert abs(r['high_mb'] - (r['parameters_mb'] + r['activations_mb'] + r['activation_grads_mb'])) <= 1
    assert 'imagenet C=48 L=14 batch 128' in imagenet_float['graph']
    for r in (float_, half, imagenet_float, imagenet_half):  # images per second of the bound on the step time
        assert r['v100_bound_images_per_s'] == pytest.approx(1000 / r['v100_bound_ms_per_image'], rel=1e-2)
    assert imagenet_half['v100_bound_ms_per_image'] < imagenet_float['v100_bound_ms_per_image']
    summary = train('--summary-only', '--model-arch-name', 'DARTS_V2').stdout  # C=36, L=20
    network, aux = map(int, re.search(r'trainable parameters: (\d+) \(aux head: (\d+)\)', summary).groups())
    weights = network + aux  # trained, so held on the GPU with their gradients and momentum
    assert float_['parameters_mb'] == half['parameters_mb'] == round(weights * 4 * 3 / 2 ** 20, 1)
    assert half['activations_mb'] < 0.7 * float_['activations_mb']


def test_hessian_cost_relates_the_product_to_the_epoch():
    proc = run_cli('benchmarks/hessian_cost.py', ['--num-cells', '3', '--output-filter', '4', '--num-nodes', '5',
                                                  '--batch-size', '4', '--steps', '1', '--steps-per-epoch', '10',
                                                  '--hessian-batches', '2', '--iterations', '7'])
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r['step_s'] > r['alpha_gradient_s'] > 0 and r['epoch_s'] == pytest.approx(10 * r['step_s'], abs=0.1)
    assert r['product_s'] == pytest.approx(2 * 2 * r['alpha_gradient_s'], abs=0.01)  # central difference, 2 batches
    # the shares come from the unrounded times; the printed ones are rounded to 0.1 ms
    assert r['worst_case_share'] == pytest.approx(20 * r['product_s'] / r['epoch_s'], rel=0.05)
    assert r['share_at_7.0_iterations'] == pytest.approx(7 * r['product_s'] / r['epoch_s'], rel=0.05)


def test_pipeline_times_the_workers_on_written_jpegs():
    proc = run_cli('benchmarks/pipeline.py', ['--workers', '0', '1', '--images', '12', '--batch', '4', '--batches', '2',
                                              '--repeats', '1', '--size', '64'])
    assert proc.returncode == 0, proc.stderr
    none, one = (json.loads(line) for line in proc.stdout.strip().splitlines())
    assert none['workers'] == 0 and one['workers'] == 1 and one['speedup_over_1'] == 1.0
    assert one['images_per_second'] > 0 and one['per_worker'] == one['images_per_second'] and one['size'] == 64
    assert 60 < one['mean_jpeg_kb'] < 200  # ImageNet's typical JPEG, 500x375
