"""The layout: every module's project imports go downward (the import graph has no cycle), and
building a network never loads matplotlib."""
import ast
import glob
import os
import subprocess
import sys

from helpers import ROOT


def project_imports():
    """{module: set of project modules it imports anywhere in its text} for the top-level modules."""
    paths = glob.glob(os.path.join(ROOT, '*.py'))
    modules = {os.path.basename(p)[:-3]: p for p in paths}
    graph = {}
    for name, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name.split('.')[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split('.')[0])
        graph[name] = found & set(modules) - {name}
    return graph


def test_the_import_graph_has_no_cycle():
    graph, done, path = project_imports(), set(), []

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
    assert {'model_eval', 'model_search', 'backbone', 'operations'} <= set(graph)


def test_building_a_network_loads_no_matplotlib():
    code = ('import sys, nnabla as nn, model_eval, model_search, genotype\n'
            'model_eval.network(nn.Variable((1, 3, 32, 32)), genotype.load("DARTS_V2"), 4, 3, auxiliary=True)\n'
            'print(sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib"))')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'


def test_the_readme_code_map_lists_the_modules_in_import_order():
    """README's code layout says a module imports only the modules below it in its table: every
    top-level module is in the table, in such an order."""
    import re
    with open(os.path.join(ROOT, 'README.md')) as f:
        text = f.read()
    table = text[text.index('| file | job |'):]
    listed = [name[:-3] for name in re.findall(r'^\| `(\w+\.py)` \|', table, re.M)]
    graph = project_imports()
    assert sorted(listed) == sorted(graph)
    for k, module in enumerate(listed):
        above = set(listed[:k + 1])
        assert not graph[module] & above, '{} imports {}, listed above it'.format(module, graph[module] & above)
