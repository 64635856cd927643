"""The text corpora (corpora.py): Penn Treebank's files from a folder, a tar archive or the
md5-checked download; a text folder with and without <unk>; the vocabulary; the refusals of bad
files; and the paper's batching against a hand-made stream."""
import hashlib
import math
import io
import shutil
import tarfile

import numpy as np
import pytest

import corpora
import datasets
from errors import UserError

TRAIN = 'the cat sat\non the mat <unk>\n\nthe end\n'
VALID = 'the dog sat\n'
TEST = 'on the cat\n'


def write_text_folder(folder, train=TRAIN, valid=VALID, test=TEST, names=None):
    names = names or corpora.file_names('text')
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in zip(corpora.SPLITS, (train, valid, test)):
        (folder / names[split]).write_bytes(text.encode('utf-8') if isinstance(text, str) else text)
    return folder


def test_a_text_folder_reads_as_the_paper_s_code_reads_it(tmp_path):
    corpus = corpora.load('text', str(write_text_folder(tmp_path / 'text')))
    assert corpus.words == ('the', 'cat', 'sat', '<eos>', 'on', 'mat', '<unk>', 'end')
    assert corpus.train.tolist() == [0, 1, 2, 3, 4, 0, 5, 6, 3, 3, 0, 7, 3]  # the empty line is one <eos>
    assert corpus.valid.tolist() == [0, 6, 2, 3]  # dog: <unk>
    assert corpus.test.tolist() == [4, 0, 1, 3] and corpus.train.dtype == np.int32


def test_a_word_outside_the_training_text_is_refused_without_unk(tmp_path):
    folder = write_text_folder(tmp_path / 'text', train='the cat sat\n')
    with pytest.raises(UserError, match="valid.txt: the word 'dog' is not in the training text, and the corpus has "
                                        "no <unk>"):
        corpora.load('text', str(folder))


@pytest.mark.parametrize('train, fragment', [
    ('', 'train.txt is empty'), ('  \n\n', 'train.txt is empty'),
    (b'the\0cat', 'train.txt is not a text file'), (b'the \xff cat\n', 'train.txt is not UTF-8 text (byte 4')])
def test_bad_files_are_one_line(tmp_path, train, fragment):
    folder = write_text_folder(tmp_path / 'text', train=train)
    with pytest.raises(UserError, match=fragment.replace('(', r'\(')):
        corpora.load('text', str(folder))


def test_a_missing_split_and_a_missing_path_are_one_line(tmp_path):
    folder = write_text_folder(tmp_path / 'text')
    (folder / 'test.txt').unlink()
    with pytest.raises(UserError, match='holds no test.txt: a corpus needs train.txt, valid.txt, test.txt'):
        corpora.load('text', str(folder))
    with pytest.raises(UserError, match='--dataset text needs --dataset-path'):
        corpora.load('text')


def ptb_text(words, lines=3):
    """A tiny Penn-Treebank-like training text with ``words`` distinct words (<eos> among them)."""
    vocabulary = ['w{}'.format(k) for k in range(words - 2)] + ['<unk>']
    return '\n'.join(' '.join(vocabulary[k::lines]) for k in range(lines)) + '\n'


def test_penn_treebank_reads_from_a_folder_or_a_tar_at_any_depth_and_has_its_vocabulary(tmp_path, monkeypatch):
    monkeypatch.setattr(corpora, 'PTB_WORDS', 12)
    names = corpora.file_names('ptb')
    folder = write_text_folder(tmp_path / 'data' / 'ptb', ptb_text(12), 'w1 w2 zzz\n', 'w3\n', names)
    corpus = corpora.load('ptb', str(tmp_path / 'data'))
    ids = [corpus.words.index(w) for w in ('w1', 'w2', '<unk>', '<eos>')]
    assert len(corpus.words) == 12 and corpus.valid.tolist() == ids
    archive = tmp_path / 'ptb.tar.gz'
    with tarfile.open(str(archive), 'w:gz') as tar:
        tar.add(str(folder), arcname='ptb')
    from_tar = corpora.load('ptb', str(archive))
    assert from_tar.words == corpus.words and np.array_equal(from_tar.test, corpus.test)
    monkeypatch.setattr(corpora, 'PTB_WORDS', 10000)
    with pytest.raises(UserError, match='12 words, Penn Treebank has 10000'):
        corpora.load('ptb', str(archive))


def test_penn_treebank_downloads_md5_checked(monkeypatch, tmp_path):
    monkeypatch.setattr(corpora, 'PTB_WORDS', 12)
    served = write_text_folder(tmp_path / 'served', ptb_text(12), 'w1\n', 'w2\n', corpora.file_names('ptb'))
    md5s = {split: hashlib.md5((served / d.name).read_bytes()).hexdigest() for split, d in corpora.PTB.items()}
    monkeypatch.setattr(corpora, 'PTB', {s: d._replace(md5=md5s[s]) for s, d in corpora.PTB.items()})
    monkeypatch.setattr(corpora, 'get_data_home', lambda: str(tmp_path / 'home'))
    calls = []

    def fake_download(url, output_file=None, open_file=True):
        calls.append(url)
        shutil.copy(str(served / url.rsplit('/', 1)[1]), output_file)
    monkeypatch.setattr(datasets, 'download', fake_download)
    assert len(corpora.load('ptb').words) == 12
    assert calls == [corpora.PTB_URL + 'ptb.{}.txt'.format(s) for s in corpora.SPLITS]
    assert (tmp_path / 'home' / 'ptb' / 'ptb.train.txt').is_file()
    assert len(corpora.load('ptb').words) == 12 and len(calls) == 3  # present now: no second download
    monkeypatch.setattr(corpora, 'PTB', {s: d._replace(md5='0' * 32) for s, d in corpora.PTB.items()})
    with pytest.raises(UserError, match='md5 is .*, expected 0{32}; the file was removed'):
        corpora.load('ptb')


def test_the_batches_are_the_paper_s_columns_and_windows():
    stream = corpora.columns(np.arange(23, dtype=np.int32), 3, 'train')
    assert stream.tolist() == [[0, 7, 14], [1, 8, 15], [2, 9, 16], [3, 10, 17], [4, 11, 18], [5, 12, 19],
                               [6, 13, 20]]  # 23 // 3 = 7 rows; 21 and 22 dropped
    lengths = corpora.window_lengths(len(stream), 4)
    assert lengths == [4, 2]
    start, seen = 0, []
    for length in lengths:
        inputs, targets = corpora.window(stream, start, length)
        assert np.array_equal(targets, inputs + 1)  # every target the next token of its column
        seen += inputs[:, 0].tolist()
        start += length
    assert seen == [0, 1, 2, 3, 4, 5]
    with pytest.raises(UserError, match='valid has 5 tokens: too few for batches of 3 columns'):
        corpora.columns(np.arange(5), 3, 'valid')


def test_the_variable_lengths_are_the_paper_s_distribution():
    rng = np.random.RandomState(0)
    lengths = corpora.window_lengths(200000, 35, rng, longest=55)
    assert sum(lengths) <= 200000 - 1 and sum(lengths) >= 200000 - 2 - 55
    lengths = np.array(lengths[:-1])
    assert lengths.min() >= 5 and lengths.max() <= 55
    def above_26(centre):  # P(int(N(centre, 5)) >= 27)
        return 0.5 * (1 - math.erf((27 - centre) / (5 * math.sqrt(2))))
    assert np.mean(lengths > 26) == pytest.approx(0.95 * above_26(35) + 0.05 * above_26(17.5), abs=0.006)
    assert lengths[lengths > 26].mean() == pytest.approx(35, abs=0.3)
    assert lengths == pytest.approx(corpora.window_lengths(200000, 35, np.random.RandomState(0), 55)[:-1])


def test_an_archive_without_every_split_is_one_line(tmp_path):
    bad = tmp_path / 'ptb.tar'
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode='w') as tar:
        info = tarfile.TarInfo('ptb.train.txt')
        info.size = 3
        tar.addfile(info, io.BytesIO(b'a b'))
    bad.write_bytes(data.getvalue())
    with pytest.raises(UserError, match='holds no ptb.valid.txt and no ptb.test.txt'):
        corpora.load('ptb', str(bad))
