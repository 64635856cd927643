"""Fixtures of the fault suite (tests/conftest.py gives it `archive`), the 'slow' marker and
the figures printed at the end.

`make faults` runs everything (python -m pytest -q tests/faults); `make test` runs the quick
cases only (-m "not slow"). The figures of a full run go to tests/faults/results.json, those
of a partial one (a marker or keyword selection) to tests/faults/results-partial.json.
"""
import json
import os
import time

import pytest

from faults import faultlib

_STARTED = time.time()


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: a long fault-injection case (make faults runs it, make test skips it)')


@pytest.fixture(scope='session')
def reference(archive, tmp_path_factory):
    """reference(name) -> (outputs, timing, folder) of the uninterrupted run of a configuration,
    computed once per session."""
    done = {}

    def get(name):
        if name not in done:
            config = faultlib.CONFIGS[name]
            folder = tmp_path_factory.mktemp('reference-' + name) / 'm'
            timing = faultlib.timed_run(config, archive, folder)
            done[name] = (faultlib.outputs(folder, config), timing, folder)
        return done[name]
    return get


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    kinds = faultlib.summary()
    if not kinds:
        return
    write = terminalreporter.write_line
    write('')
    write('fault suite: faults injected / runs / runs that ended as required')
    for kind, k in sorted(kinds.items()):
        write('  {:<46} {:>4} faults {:>4} runs {:>4} ok'.format(kind, k['faults'], k['runs'], k['ok']))
        for hit, n in sorted(k['hits'].items()):
            write('      {:<42} {:>4}'.format(hit, n))
    partial = bool(config.option.markexpr or config.option.keyword or getattr(config.option, 'lf', False))
    name = 'results-partial.json' if partial else 'results.json'
    path = os.path.join(faultlib.HERE, name)
    with open(path, 'w') as f:
        json.dump(dict(kinds=kinds, seconds=round(time.time() - _STARTED, 1), exit_status=int(exitstatus),
                       selection=dict(markers=config.option.markexpr, keywords=config.option.keyword,
                                      args=[str(a) for a in config.args]),
                       cases=faultlib.TALLY), f, indent=1)
    write('figures written to {}'.format(os.path.relpath(path, faultlib.ROOT)))
