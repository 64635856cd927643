"""Write tests/data/gpu_functions.json: the nnabla functions that nnabla-ext-cuda implements on the
GPU, with their backends and type configs ({"Convolution": ["cuda:float", "cuda:half",
"cudnn:float", "cudnn:half"], ...}), and the solvers it implements ({"Momentum": ["cuda:float"],
...}). tests/test_gpu_coverage.py checks every step of the project against it, so CI needs
neither a GPU nor the extension.

Regenerate it (no GPU or driver needed: the library is read, never loaded) with

    python3.10 -m venv /tmp/cudavenv
    /tmp/cudavenv/bin/pip install nnabla==1.39.0 nnabla-ext-cuda120==1.39.0
    /tmp/cudavenv/bin/python benchmarks/gpu_functions.py

How it reads the library (binutils ``nm``): the extension registers its implementations of a
function X into nnabla's registry ``nbla::get_XRegistry()``, a symbol it imports from libnnabla;
the implementations are the classes ``nbla::XCuda<T>`` (backend cuda) and ``nbla::XCudaCudnn<T>``
(backend cudnn), whose vtables it defines, T = float or nbla::Half (type configs float, half).
A function absent from the file runs on the CPU under ``--context cudnn``: nnabla falls back to
its CPU implementation and copies the arrays to the host and back at every call.
"""
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests', 'data',
                   'gpu_functions.json')
BACKENDS = (('CudaCudnn', 'cudnn'), ('Cuda', 'cuda'))
TYPES = {'float': 'float', 'nbla::Half': 'half'}


def library():
    """The path of the installed extension's libnnabla_cuda-*.so (found without importing it)."""
    folder = importlib.util.find_spec('nnabla_ext.cuda').submodule_search_locations[0]
    names = [n for n in os.listdir(folder) if n.startswith('libnnabla_cuda') and '.so' in n]
    if len(names) != 1:
        sys.exit('expected one libnnabla_cuda*.so in {}, found {}'.format(folder, names))
    return os.path.join(folder, names[0])


def symbols(path, *flags):
    """The demangled dynamic symbols of ``path`` (``nm -D -C`` with ``flags``)."""
    return subprocess.run(['nm', '-D', '-C'] + list(flags) + [path], check=True, capture_output=True,
                          text=True).stdout


def implementations(path):
    """{function: sorted ["backend:type", ...]} of the functions the library registers, and the
    same of its solvers (registries nbla::get_<Name>SolverRegistry())."""
    registered = set(re.findall(r'nbla::get_(\w+)Registry\(\)', symbols(path, '--undefined-only')))
    registered |= {name[:-len('Solver')] for name in registered if name.endswith('Solver')}
    classes = set(re.findall(r'vtable for nbla::(\w+)<(float|nbla::Half)[,>]', symbols(path, '--defined-only')))
    table = {}
    for function in sorted(registered):
        configs = ['{}:{}'.format(backend, TYPES[t]) for suffix, backend in BACKENDS for t in TYPES
                   if (function + suffix, t) in classes]
        if configs:  # the communicators' registries have no such classes
            table[function] = sorted(configs)
    solvers = {name[:-len('Solver')] for name in registered if name.endswith('Solver')}
    return ({k: v for k, v in table.items() if k not in solvers},
            {k: v for k, v in table.items() if k in solvers})


def main():
    path = library()
    functions, solvers = implementations(path)
    data = {'extension': 'nnabla-ext-cuda120 ' + importlib.metadata.version('nnabla-ext-cuda120'),
            'library': os.path.basename(path), 'functions': functions, 'solvers': solvers}
    with open(OUT, 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write('\n')
    print('{} functions and {} solvers with a GPU implementation written to {}'.format(
        len(functions), len(solvers), OUT))


if __name__ == '__main__':
    main()
