"""A process that has imported the scripts' modules once and runs each job of the tests in a fork
of itself (helpers.run_cli starts one per test process and sends it the jobs).

Most of a tiny job is Python starting and importing nnabla, numpy and matplotlib: 0.5 s of a
0.6 s refusal, 1 s of a 3 s search. A fork of a process that holds them starts at once. The
child is what ``python PROGRAM ARGV`` would be: a process of its own, with the job's working
folder and environment, stdin from /dev/null, stdout and stderr to files, the script run as
__main__ (runpy), and the interpreter's exit (the code of SystemExit, a traceback and 1 for an
uncaught exception, the atexit handlers). Two things differ, so helpers.run_cli starts a real
process where they matter: the modules were imported before the job's environment was set (a
variable read at import, PYTHONPATH above all, would not take effect), and every job shares the
launcher's hash seed.

Protocol: a JSON line per job on stdin ({id, program, argv, cwd, env, stdout, stderr, timeout});
one JSON line back when it has ended ({id, returncode, timed_out}), the job killed at its timeout.
"""
import atexit
import importlib
import json
import os
import runpy
import signal
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = ('darts_search.py', 'darts_train.py', 'darts_seeds.py')  # the scripts it runs
POLL = 0.005  # seconds between two looks at a running job


def preload():
    """Import what the jobs import, with the repository root as a script's sys.path[0]."""
    sys.path[0] = ROOT
    for module in [p[:-len('.py')] for p in PROGRAMS] + ['matplotlib.figure', 'matplotlib.backends.backend_agg']:
        importlib.import_module(module)  # matplotlib: the pictures' first drawing


def redirect(fd, path, flags):
    target = os.open(path, flags, 0o644)
    os.dup2(target, fd)
    os.close(target)


def exit_status(code):
    """The exit status that Python gives ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xff
    print(code, file=sys.stderr)
    return 1


def job(request):
    """In the child: run the program as ``python program argv`` would, then end the process."""
    status = 1
    try:
        os.chdir(request['cwd'])
        os.environ.clear()
        os.environ.update(request['env'])
        redirect(0, os.devnull, os.O_RDONLY)
        for fd, name in ((1, 'stdout'), (2, 'stderr')):
            redirect(fd, request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        path = os.path.join(ROOT, request['program'])
        sys.argv = [path] + request['argv']
        try:
            runpy.run_path(path, run_name='__main__')
            status = 0
        except SystemExit as e:
            status = exit_status(e.code)
        except BaseException:
            traceback.print_exc()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def wait(pid, timeout):
    """(return code as subprocess gives it, whether the job was killed at ``timeout``)."""
    deadline, timed_out = time.monotonic() + timeout, False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), timed_out
        if not timed_out and time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            timed_out = True
        time.sleep(POLL)


def serve():
    preload()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()  # nothing of the launcher's is left in a buffer that the child would write
        pid = os.fork()
        if pid == 0:
            job(request)
        returncode, timed_out = wait(pid, request['timeout'])
        print(json.dumps({'id': request['id'], 'returncode': returncode, 'timed_out': timed_out}), flush=True)


if __name__ == '__main__':
    serve()
