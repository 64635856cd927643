"""The layout: every module's project imports go downward (the import graph has no cycle, between
packages neither), the README's code map lists the top-level modules and the packages in that
order, and building a network never loads matplotlib."""
import ast
import glob
import os
import re
import subprocess
import sys

from helpers import ROOT

PACKAGES = ('spaces', 'methods', 'tasks')


def modules():
    """{dotted module name: path} of the project's code: the top-level modules and the packages'."""
    paths = glob.glob(os.path.join(ROOT, '*.py')) + [p for package in PACKAGES for p in glob.glob(
        os.path.join(ROOT, package, '**', '*.py'), recursive=True)]
    found = {}
    for path in paths:
        name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
        found[name[:-len('.__init__')] if name.endswith('.__init__') else name] = path
    return found


def project_imports():
    """{module: set of project modules it imports anywhere in its text} (``from p import m`` names
    the module p.m where there is one, else p)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.update('{}.{}'.format(node.module, a.name) if '{}.{}'.format(node.module, a.name) in known
                             else node.module for a in node.names)
        graph[name] = found & set(known) - {name}
    return graph


def top(name):
    """The top-level module or package that module ``name`` belongs to."""
    return name.split('.')[0]


def assert_no_cycle(graph):
    done, path = set(), []

    def visit(module):
        assert module not in path, 'import cycle: ' + ' -> '.join(path[path.index(module):] + [module])
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)
    for module in sorted(graph):
        visit(module)


def package_graph(graph):
    """The import graph between top-level modules and packages (a package's own imports left out)."""
    tops = {}
    for module, imported in graph.items():
        tops.setdefault(top(module), set()).update(top(m) for m in imported if top(m) != top(module))
    return tops


def test_the_import_graph_has_no_cycle_between_modules_or_packages():
    graph = project_imports()
    assert_no_cycle(graph)
    assert_no_cycle(package_graph(graph))
    assert {'model_eval', 'model_search', 'operations', 'spaces.darts_cnn.network', 'spaces.nas_bench_201.network',
            'methods.darts', 'tasks.classification'} <= set(graph)


def test_building_a_network_loads_no_matplotlib():
    code = ('import sys, nnabla as nn, genotype, spaces\n'
            'from spaces.space import Net\n'
            'from tasks.classification import CIFAR10\n'
            'for name, arch in (("darts", "DARTS_V2"), ("nas-bench-201", "|nor_conv_3x3~0|+|none~0|none~1|+'
            '|skip_connect~0|none~1|none~2|")):\n'
            '    space = spaces.get(name)\n'
            '    space.network(nn.Variable((1, 3, 32, 32)), genotype.load(arch, space), Net(4, 3, CIFAR10, '
            'auxiliary=True))\n'
            '    nn.clear_parameters()\n'
            '    space.supernet(nn.Variable((1, 3, 32, 32)), Net(4, 1, CIFAR10))\n'
            '    nn.clear_parameters()\n'
            'print(sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib"))')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'


def test_the_readme_code_map_lists_the_modules_and_packages_in_import_order():
    """README's code map says a module (or package) imports only the modules and packages below it
    in its table: every top-level module and package is in the table, in such an order."""
    with open(os.path.join(ROOT, 'README.md')) as f:
        text = f.read()
    table = text[text.index('| file | job |'):]
    listed = [name[:-3] if name.endswith('.py') else name.rstrip('/')
              for name in re.findall(r'^\| `(\w+\.py|\w+/)` \|', table, re.M)]
    graph = package_graph(project_imports())
    assert sorted(listed) == sorted(graph)
    for k, module in enumerate(listed):
        above = set(listed[:k + 1])
        assert not graph[module] & above, '{} imports {}, listed above it'.format(module, graph[module] & above)
