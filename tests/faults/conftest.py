"""Fixtures of the fault suite (tests/conftest.py gives it `archive`, and prints and writes the
tally) and the 'slow' marker.

`make faults` runs everything (python -m pytest -q tests/faults); `make test` runs the quick
cases only (-m "not slow").
"""
import pytest

from faults import faultlib


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
