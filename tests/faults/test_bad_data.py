"""Bad data: a truncated archive, a download with the wrong md5 (a wrong file served on
127.0.0.1 through the tests-only $DARTS_CIFAR10_URL), a batch of the wrong shape, labels
outside 0..9, a pickle crafted to run code, an empty folder. Each: one line, exit code 2,
nothing in the monitor folder that a later good run would trip over.
"""
import functools
import http.server
import os
import pickle
import shutil
import tarfile
import threading

import numpy as np
import pytest

from conftest import replace_entry
from faults.faultlib import CONFIGS, assert_identical, one_line, run_cli, tally, write_archive

KIND = 'bad data'



class Evil:
    """Pickles into the call ``function(argument)``, as a batch crafted to run code would."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


def truncated(path, marker):
    write_archive(path, 8, 10)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) * 2 // 3])


def empty_file(path, marker):
    open(path, 'wb').close()


def empty_folder(path, marker):
    os.makedirs(path)


def empty_batches_folder(path, marker):
    os.makedirs(os.path.join(path, 'cifar-10-batches-py'))


def archive_with(mutate):
    """A maker of a tiny archive changed by ``mutate`` (or by ``mutate(marker)`` for a crafted pickle)."""
    def make(path, marker):
        write_archive(path, 8, 10, mutate=mutate(marker) if getattr(mutate, 'needs_marker', False) else mutate)
    return make


def crafted(how):
    """A mutate() that puts a pickle running code into data_batch_3; the code would create the marker."""
    def make(marker):
        payload = {
            'system': Evil(os.system, 'touch {}'.format(marker)),
            'exec': Evil(exec, 'open({!r}, "w").close()'.format(marker)),
            'eval': Evil(eval, '__import__("os").system("touch {}")'.format(marker)),
            'subprocess': Evil(__import__('subprocess').call, ['touch', marker]),
        }[how]

        def mutate(name, batch):
            if name == 'data_batch_3':
                return pickle.dumps({b'data': batch[b'data'], b'labels': payload}, protocol=2)
            return batch
        return mutate
    make.needs_marker = True
    return make


def folder_with(batch_bytes):
    """An extracted folder whose data_batch_1 holds ``batch_bytes``."""
    def make(path, marker):
        write_archive(path + '.tar.gz', 8, 10)
        with tarfile.open(path + '.tar.gz') as tar:
            tar.extractall(path)
        with open(os.path.join(path, 'cifar-10-batches-py', 'data_batch_1'), 'wb') as f:
            f.write(batch_bytes(marker))
    return make


CASES = [
    ('truncated archive', truncated, ['truncated']),
    ('empty file', empty_file, ['not a tar.gz']),
    ('empty folder', empty_folder, ['missing batch data_batch_1']),
    ('empty cifar-10-batches-py', empty_batches_folder, ['missing batch data_batch_1']),
    ('wrong shape', archive_with(replace_entry('data_batch_2', b'data', lambda d: d[:, :3000])), ['shape (n, 3072)']),
    ('wrong shape (images)', archive_with(replace_entry('test_batch', b'data', lambda d: d.reshape(-1, 3, 32, 32))),
     ['shape (n, 3072)']),
    ('wrong dtype', archive_with(replace_entry('data_batch_1', b'data', lambda d: d.astype(np.float32))), ['uint8']),
    ('fewer labels', archive_with(replace_entry('data_batch_5', b'labels', lambda v: v[:-1])), ['7 labels for 8 images']),
    ('label 10', archive_with(replace_entry('data_batch_4', b'labels', lambda v: v[:3] + [10] + v[4:])),
     ['data_batch_4', 'label 10 is outside 0..9']),
    ('label -1', archive_with(replace_entry('test_batch', b'labels', lambda v: [-1] + v[1:])),
     ['test_batch', 'label -1 is outside 0..9']),
    ('missing batch', archive_with(lambda name, b: None if name == 'data_batch_5' else b), ['missing batch']),
    ('pickle runs os.system', archive_with(crafted('system')), ['refusing to load', 'system']),
    ('pickle runs exec', archive_with(crafted('exec')), ['refusing to load', 'exec']),
    ('pickle runs eval', archive_with(crafted('eval')), ['refusing to load', 'eval']),
    ('pickle runs subprocess', archive_with(crafted('subprocess')), ['refusing to load', '.call']),
    ('crafted pickle in a folder', folder_with(
        lambda marker: pickle.dumps(Evil(os.system, 'touch {}'.format(marker)), protocol=2)),
     ['refusing to load', 'data_batch_1']),
    ('not a pickle in a folder', folder_with(lambda marker: b'\x80\x02garbage'), ['cannot unpickle']),
]


def assert_nothing_to_trip_over(monitor, arch=None):
    """No file at all in the monitor folder (a new run there is never refused), no arch JSON."""
    assert not os.path.exists(str(monitor)) or os.listdir(str(monitor)) == [], os.listdir(str(monitor))
    assert arch is None or not os.path.exists(str(arch))


SEARCH_CASES = ('truncated archive', 'empty folder', 'label 10', 'pickle runs os.system')  # the same loader
SCRIPT_CASES = [pytest.param('train', *c, id='train-' + c[0]) for c in CASES] + [
    pytest.param('search1', *c, marks=pytest.mark.slow, id='search1-' + c[0]) for c in CASES if c[0] in SEARCH_CASES]


@pytest.mark.parametrize('script, case, make, fragments', SCRIPT_CASES)
def test_bad_data_is_one_line_and_leaves_nothing(script, case, make, fragments, tmp_path):
    config = CONFIGS[script]
    path, marker = str(tmp_path / 'data' / 'c.tar.gz'), str(tmp_path / 'MARKER')
    os.makedirs(os.path.dirname(path))
    if case.endswith('folder') or 'batches' in case:
        path = path[:-len('.tar.gz')]
    make(path, marker)
    monitor = tmp_path / 'm'
    with tally(KIND):
        res = run_cli(config.program, config.argv(path, monitor))
        one_line(res, *fragments, code=2)
        assert config.built_line not in res.stdout
        assert not os.path.exists(marker), 'the crafted pickle ran'
        assert_nothing_to_trip_over(monitor, monitor / 'arch.json')


@pytest.mark.parametrize('how', ['system', 'exec', 'eval', 'subprocess'])
def test_the_crafted_pickles_do_run_code_when_unpickled_naively(how, tmp_path):
    """The payloads above are live: plain pickle.loads runs them (so their refusal means something)."""
    marker = str(tmp_path / 'MARKER')
    batch = crafted(how)(marker)('data_batch_3', {b'data': np.zeros((1, 3072), np.uint8), b'labels': [0]})
    pickle.loads(batch)
    assert os.path.exists(marker)


# ---------------------------------------------------------------- download with a wrong md5


class Server:
    """http.server on 127.0.0.1 (a free port, a thread) serving one folder; counts GET requests."""

    def __init__(self, folder):
        requests = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                     functools.partial(Handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name):
        return 'http://127.0.0.1:{}/{}'.format(self.httpd.server_address[1], name)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    served = tmp_path / 'served'
    served.mkdir()
    s = Server(served)
    s.folder = served
    yield s
    s.close()


def download_env(tmp_path, url):
    """A fresh home (so ~/nnabla_data is empty), the URL override, no proxy for the local server."""
    home = tmp_path / 'home'
    home.mkdir(exist_ok=True)
    env = dict(HOME=str(home), DARTS_CIFAR10_URL=url, no_proxy='127.0.0.1,localhost', NO_PROXY='127.0.0.1,localhost')
    env.update({name: None for name in ('http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY')})
    return env, home / 'nnabla_data'


def without_dataset_path(argv):
    i = argv.index('--dataset-path')
    return argv[:i] + argv[i + 2:]


@pytest.mark.parametrize('script', ['train', 'search1'])
def test_a_downloaded_archive_with_the_wrong_md5_is_removed(script, server, tmp_path):
    config = CONFIGS[script]
    write_archive(server.folder / 'cifar-10-python.tar.gz', 8, 10)  # a valid archive, not the official one
    env, data_home = download_env(tmp_path, server.url('cifar-10-python.tar.gz'))
    monitor = tmp_path / 'm'
    with tally(KIND):
        res = run_cli(config.program, without_dataset_path(config.argv('unused', monitor)), **env)
        one_line(res, 'md5', 'c58f30108f718f92721af3b95e74349a', 'removed', code=2)
        assert server.requests == ['/cifar-10-python.tar.gz']
        assert os.listdir(str(data_home)) == []  # neither the archive nor a partial download is left
        assert config.built_line not in res.stdout
        assert_nothing_to_trip_over(monitor, monitor / 'arch.json')


def test_a_corrupt_archive_already_in_the_data_folder_is_removed(server, tmp_path):
    config = CONFIGS['train']
    env, data_home = download_env(tmp_path, server.url('cifar-10-python.tar.gz'))
    data_home.mkdir()
    truncated(str(data_home / 'cifar-10-python.tar.gz'), None)
    monitor = tmp_path / 'm'
    with tally(KIND):
        res = run_cli(config.program, without_dataset_path(config.argv('unused', monitor)), **env)
        one_line(res, 'md5', 'removed', code=2)
        assert server.requests == [] and os.listdir(str(data_home)) == []
        assert_nothing_to_trip_over(monitor)


def test_a_failed_download_is_one_line(server, tmp_path):
    config = CONFIGS['train']
    env, data_home = download_env(tmp_path, server.url('no-such-file.tar.gz'))
    monitor = tmp_path / 'm'
    with tally(KIND):
        res = run_cli(config.program, without_dataset_path(config.argv('unused', monitor)), **env)
        one_line(res, 'cannot download CIFAR-10', 'File not found', '--dataset-path', code=2)
        assert os.listdir(str(data_home)) == []
        assert_nothing_to_trip_over(monitor)


@pytest.mark.slow
@pytest.mark.parametrize('script', ['train', 'search1'])
def test_a_good_run_after_bad_data_in_the_same_folders(script, archive, reference, server, tmp_path):
    """What a refused run leaves never stops the next one: a bad download, then a crafted pickle,
    then the good archive in the same monitor folder (and the same arch JSON path)."""
    config = CONFIGS[script]
    write_archive(server.folder / 'cifar-10-python.tar.gz', 8, 10)
    env, _ = download_env(tmp_path, server.url('cifar-10-python.tar.gz'))
    monitor = tmp_path / 'm'
    evil = str(tmp_path / 'evil.tar.gz')
    archive_with(crafted('exec'))(evil, str(tmp_path / 'MARKER'))
    with tally(KIND, faults=2):
        one_line(run_cli(config.program, without_dataset_path(config.argv('unused', monitor)), **env), 'md5', code=2)
        one_line(run_cli(config.program, config.argv(evil, monitor)), 'refusing to load', code=2)
        res = run_cli(config.program, config.argv(archive, monitor))
        assert res.returncode == 0, res.stderr[-3000:]
        assert_identical(reference(script)[0], monitor, config)
    shutil.rmtree(str(tmp_path / 'home'), ignore_errors=True)
