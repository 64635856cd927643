"""The fault suite's injection points name functions of the project (tests/faults/inject.py):
a rename must fail here, in make test, and not only in the slow cases of make faults."""
import glob
import os
import re
import subprocess
import sys

from faults import inject
from helpers import ROOT, TRAIN_TINY

POINT_SPEC = re.compile(r"'(\w+):\d+:(?:{})'".format('|'.join(inject.ACTIONS)))


def test_every_wrapped_function_exists():
    assert inject.missing_targets() == []


def test_every_point_the_fault_tests_name_is_known():
    named = set()
    for path in glob.glob(os.path.join(ROOT, 'tests', 'faults', 'test_*.py')):
        with open(path) as f:
            named.update(POINT_SPEC.findall(f.read()))
    assert named, 'no POINT:N:ACTION found in the fault tests'
    assert named <= set(inject.POINTS), named - set(inject.POINTS)


def test_every_point_installs_and_a_job_runs_under_all_of_them():
    faults = [arg for name in inject.POINTS for arg in ('--fault', '{}:1000000:kill'.format(name))]
    done = subprocess.run([sys.executable, inject.__file__, 'train'] + faults + ['--'] + TRAIN_TINY +
                          ['--summary-only'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'trainable parameters:' in done.stdout
