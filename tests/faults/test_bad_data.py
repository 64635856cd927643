"""Bad data, end to end: the line a user sees and what the refused job leaves, for one damaged
archive and one pickle crafted to run code (the many other malformed batches are refused by the
same loader: tests/test_data.py has each of them), and for a download with the wrong md5 (a
wrong file served on 127.0.0.1 through the tests-only $DARTS_DATA_URL). Each: one line, exit
code 2, nothing in the monitor folder that a later good run would trip over.
"""
import functools
import http.server
import os
import pickle
import shutil
import threading

import pytest

from faults.faultlib import CONFIGS, assert_identical, tally
from helpers import Evil, one_line, run_cli, truncated_archive, write_archive

KIND = 'bad data'


def crafted(how, marker):
    """A mutate() for write_archive that puts a pickle running code into data_batch_3; the code
    would create ``marker``."""
    payload = {
        'system': Evil(os.system, 'touch {}'.format(marker)),
        'exec': Evil(exec, 'open({!r}, "w").close()'.format(marker)),
    }[how]

    def mutate(name, batch):
        if name == 'data_batch_3':
            return pickle.dumps({b'data': batch[b'data'], b'labels': payload}, protocol=2)
        return batch
    return mutate


CASES = [
    ('truncated archive', lambda path, marker: truncated_archive(path), ['truncated']),
    ('pickle runs os.system', lambda path, marker: write_archive(path, 8, 10, mutate=crafted('system', marker)),
     ['refusing to load', 'system']),
]


def assert_nothing_to_trip_over(monitor, arch=None):
    """No file at all in the monitor folder (a new run there is never refused), no arch JSON."""
    assert not os.path.exists(str(monitor)) or os.listdir(str(monitor)) == [], os.listdir(str(monitor))
    assert arch is None or not os.path.exists(str(arch))


SCRIPT_CASES = [pytest.param('train', *c, id='train-' + c[0]) for c in CASES] + [
    pytest.param('search1', *c, marks=pytest.mark.slow, id='search1-' + c[0]) for c in CASES]


@pytest.mark.parametrize('script, case, make, fragments', SCRIPT_CASES)
def test_bad_data_is_one_line_and_leaves_nothing(script, case, make, fragments, tmp_path):
    config = CONFIGS[script]
    path, marker = str(tmp_path / 'c.tar.gz'), str(tmp_path / 'MARKER')
    make(path, marker)
    monitor = tmp_path / 'm'
    with tally(KIND):
        res = run_cli(config.program, config.argv(path, monitor))
        one_line(res, *fragments, code=2)
        assert config.built_line not in res.stdout
        assert not os.path.exists(marker), 'the crafted pickle ran'
        assert_nothing_to_trip_over(monitor, monitor / 'arch.json')


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
    """A fresh home (so ~/nnabla_data is empty), the URL override (the folder URL the file name is
    appended to), no proxy for the local server."""
    home = tmp_path / 'home'
    home.mkdir(exist_ok=True)
    env = dict(HOME=str(home), DARTS_DATA_URL=url, no_proxy='127.0.0.1,localhost', NO_PROXY='127.0.0.1,localhost')
    env.update({name: None for name in ('http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY')})
    return env, home / 'nnabla_data'


def without_dataset_path(argv):
    i = argv.index('--dataset-path')
    return argv[:i] + argv[i + 2:]


@pytest.mark.parametrize('script', ['train', 'search1'])
def test_a_downloaded_archive_with_the_wrong_md5_is_removed(script, server, tmp_path):
    config = CONFIGS[script]
    write_archive(server.folder / 'cifar-10-python.tar.gz', 8, 10)  # a valid archive, not the official one
    env, data_home = download_env(tmp_path, server.url(''))
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
    env, data_home = download_env(tmp_path, server.url(''))
    data_home.mkdir()
    truncated_archive(data_home / 'cifar-10-python.tar.gz')
    monitor = tmp_path / 'm'
    with tally(KIND):
        res = run_cli(config.program, without_dataset_path(config.argv('unused', monitor)), **env)
        one_line(res, 'md5', 'removed', code=2)
        assert server.requests == [] and os.listdir(str(data_home)) == []
        assert_nothing_to_trip_over(monitor)


def test_a_failed_download_is_one_line(server, tmp_path):
    config = CONFIGS['train']
    env, data_home = download_env(tmp_path, server.url('no-such-folder/'))
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
    env, _ = download_env(tmp_path, server.url(''))
    monitor = tmp_path / 'm'
    evil = str(tmp_path / 'evil.tar.gz')
    write_archive(evil, 8, 10, mutate=crafted('exec', str(tmp_path / 'MARKER')))
    with tally(KIND, faults=2):
        one_line(run_cli(config.program, without_dataset_path(config.argv('unused', monitor)), **env), 'md5', code=2)
        one_line(run_cli(config.program, config.argv(evil, monitor)), 'refusing to load', code=2)
        res = run_cli(config.program, config.argv(archive, monitor))
        assert res.returncode == 0, res.stderr[-3000:]
        assert_identical(reference(script)[0], monitor, config)
    shutil.rmtree(str(tmp_path / 'home'), ignore_errors=True)
