"""PyTorch measuring stick for the recurrent space: the DARTS recurrent supernet's search step and the
retraining step of a recurrent cell, as language models.

An independent PyTorch model of the paper's recurrent networks as this project defines them
(docs/reference.md, "The recurrent space"), used only for side-by-side speed, memory and
perplexity comparisons with the NNabla code. It is NOT a dependency of the project and is never
imported by it; run it in a scratch virtualenv:

    python3.11 -m venv /tmp/torchref && /tmp/torchref/bin/pip install torch==2.13.0 numpy
    /tmp/torchref/bin/python benchmarks/torch_rnn.py search SIZE BATCH BPTT STEPS [THREADS]
    /tmp/torchref/bin/python benchmarks/torch_rnn.py train SIZE BATCH BPTT STEPS [THREADS]
    /tmp/torchref/bin/python benchmarks/torch_rnn.py ptb FOLDER SIZE BATCH BPTT EPOCHS [THREADS]

search: one first-order step (the alphas' Adam on a validation window, then SGD with clip 0.25 on
a training window) of the supernet language model (embedding = hidden = SIZE, 10,000 words) on
random tokens; train: one retraining step of the DARTS_V2 model. One warm-up step, then STEPS timed
steps; the median seconds per step is reported. ptb: EPOCHS of the retraining recipe on the Penn
Treebank files in FOLDER (plain SGD, lr 20, fixed windows of BPTT, the state carried), the
validation perplexity after every epoch. The last line printed is one JSON object.
"""
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

OPS = ['none', 'tanh', 'relu', 'sigmoid', 'identity']
ACT = {'tanh': torch.tanh, 'relu': torch.relu, 'sigmoid': torch.sigmoid, 'identity': lambda h: h}
DARTS_V2 = [('sigmoid', 0), ('relu', 1), ('relu', 1), ('identity', 1), ('tanh', 2), ('sigmoid', 5), ('tanh', 3),
            ('relu', 5)]
STEPS_NODES = 8
WORDS = 10000
# dropouts: output, hidden, x, input, embedding (the search's; the retraining's embedding one is 0.1)
SEARCH_DROPOUT = (0.75, 0.25, 0.75, 0.2, 0.0)
TRAIN_DROPOUT = (0.75, 0.25, 0.75, 0.2, 0.1)


def mask(shape, p):
    return torch.bernoulli(torch.full(shape, 1 - p)) / (1 - p) if p else torch.ones(shape)


class Cell(nn.Module):
    """The recurrent cell; ``genotype`` None: the supernet cell (every earlier node into every node,
    mixed by softmax(alpha), BN without affine parameters on the states)."""

    def __init__(self, size, genotype=None):
        super().__init__()
        self.size, self.genotype = size, genotype
        self.w0 = nn.Parameter(torch.empty(2 * size, 2 * size).uniform_(-0.04, 0.04))
        self.ws = nn.ParameterList([nn.Parameter(torch.empty(size, 2 * size).uniform_(-0.04, 0.04))
                                    for _ in range(STEPS_NODES)])
        if genotype is None:
            self.bn = nn.BatchNorm1d(size, affine=False)

    def step(self, x, h, x_mask, h_mask, weights):
        c0, h0 = torch.split(torch.cat([x * x_mask, h * h_mask], 1) @ self.w0, self.size, dim=-1)
        s0 = h + torch.sigmoid(c0) * (torch.tanh(h0) - h)
        if self.genotype is not None:
            states = [s0]
            for i, (op, j) in enumerate(self.genotype):
                states.append(self.gate(states[j], states[j] * h_mask, self.ws[i], op))
            return torch.stack(states[1:]).mean(0)
        states, row = [self.bn(s0)], 0
        for i in range(STEPS_NODES):
            before = torch.stack(states)  # (i + 1, B, size)
            c, hh = torch.split((before * h_mask) @ self.ws[i], self.size, dim=-1)
            c = torch.sigmoid(c)
            w = weights[row:row + i + 1]
            s = sum(w[:, k, None, None] * (before + c * (ACT[op](hh) - before)) for k, op in enumerate(OPS) if k)
            states.append(self.bn(s.sum(0)))
            row += i + 1
        return torch.stack(states[1:]).mean(0)

    def gate(self, s, masked, w, op):
        c, h = torch.split(masked @ w, self.size, dim=-1)
        return s + torch.sigmoid(c) * (ACT[op](h) - s)


class Model(nn.Module):
    def __init__(self, size, genotype=None, dropout=SEARCH_DROPOUT):
        super().__init__()
        self.size, self.dropout = size, dropout
        self.embedding = nn.Parameter(torch.empty(WORDS, size).uniform_(-0.1, 0.1))
        self.bias = nn.Parameter(torch.zeros(WORDS))
        self.cell = Cell(size, genotype)
        if genotype is None:
            self.alpha = nn.Parameter(1e-3 * torch.randn(36, len(OPS)))

    def weights(self):
        return [p for name, p in self.named_parameters() if name != 'alpha']

    def forward(self, tokens, h, train=True):
        out_p, h_p, x_p, in_p, emb_p = self.dropout if train else (0,) * 5
        steps, batch = tokens.shape
        table = self.embedding * mask((WORDS, 1), emb_p)
        x = F.embedding(tokens, table) * mask((1, batch, self.size), in_p)
        x_mask, h_mask = mask((batch, self.size), x_p), mask((batch, self.size), h_p)
        weights = F.softmax(self.alpha, dim=-1) if self.cell.genotype is None else None
        hs = []
        for t in range(steps):
            h = self.cell.step(x[t], h, x_mask, h_mask, weights)
            hs.append(h)
        raw = torch.stack(hs)
        out = raw * mask((1, batch, self.size), out_p)
        return out.view(-1, self.size) @ self.embedding.t() + self.bias, h, raw


def loss_of(model, tokens, targets, h, tar=1e-3):
    logits, last, raw = model(tokens, h)
    loss = F.cross_entropy(logits, targets.reshape(-1))
    return loss + tar * (raw[1:] - raw[:-1]).pow(2).mean(), last.detach()


def timed(step, steps):
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(mode, size, batch, bptt, steps):
    torch.manual_seed(0)
    model = Model(size, None if mode == 'search' else DARTS_V2, SEARCH_DROPOUT if mode == 'search' else TRAIN_DROPOUT)
    sgd = torch.optim.SGD(model.weights(), lr=20, weight_decay=5e-7 if mode == 'search' else 8e-7)
    adam = torch.optim.Adam([model.alpha], lr=3e-3, weight_decay=1e-3) if mode == 'search' else None
    h = {'train': torch.zeros(batch, size), 'valid': torch.zeros(batch, size)}

    def tokens():
        return torch.randint(0, WORDS, (bptt, batch)), torch.randint(0, WORDS, (bptt, batch))

    def step():
        if adam:
            x, y = tokens()
            loss, h['valid'] = loss_of(model, x, y, h['valid'])
            adam.zero_grad()
            model.alpha.grad, = torch.autograd.grad(loss, [model.alpha])
            adam.step()
        x, y = tokens()
        loss, h['train'] = loss_of(model, x, y, h['train'])
        sgd.zero_grad()
        loss.backward()
        if model.cell.genotype is None:
            model.alpha.grad = None
        nn.utils.clip_grad_norm_(model.weights(), 0.25)
        sgd.step()
    seconds = timed(step, steps)
    return dict(mode=mode, size=size, batch=batch, bptt=bptt, sec_per_step=round(seconds, 4),
                params=sum(p.numel() for p in model.weights()), threads=torch.get_num_threads())


def read_ptb(folder):
    ids, out = {}, {}
    for split in ('train', 'valid', 'test'):
        words = []
        with open(os.path.join(folder, 'ptb.{}.txt'.format(split))) as f:
            for line in f:
                words += line.split() + ['<eos>']
        for w in words:
            ids.setdefault(w, len(ids))
        out[split] = torch.tensor([ids[w] for w in words])
    return out


def columns(ids, batch):
    rows = len(ids) // batch
    return ids[:rows * batch].view(batch, rows).t().contiguous()


def evaluate(model, data, size, bptt):
    model.eval()
    total, count, h = 0.0, 0, torch.zeros(data.shape[1], size)
    with torch.no_grad():
        for i in range(0, len(data) - 1, bptt):
            x, y = data[i:i + bptt], data[i + 1:i + 1 + bptt]
            x = x[:len(y)]
            logits, h, _ = model(x, h, train=False)
            total += F.cross_entropy(logits, y.reshape(-1), reduction='sum').item()
            count += y.numel()
    model.train()
    return total / count


def ptb(folder, size, batch, bptt, epochs):
    torch.manual_seed(0)
    data = read_ptb(folder)
    train, valid = columns(data['train'], batch), columns(data['valid'], 10)
    model = Model(size, DARTS_V2, TRAIN_DROPOUT)
    sgd = torch.optim.SGD(model.weights(), lr=20, weight_decay=8e-7)
    curve, start = [], time.time()
    for epoch in range(epochs):
        h = torch.zeros(batch, size)
        for i in range(0, (len(train) - 1) // bptt * bptt, bptt):
            loss, h = loss_of(model, train[i:i + bptt], train[i + 1:i + 1 + bptt], h)
            sgd.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.weights(), 0.25)
            sgd.step()
        curve.append(round(float(torch.exp(torch.tensor(evaluate(model, valid, size, bptt)))), 2))
        print(json.dumps({'epoch': epoch + 1, 'validation_perplexity': curve[-1], 'seconds': round(time.time() - start)}),
              flush=True)
    return dict(mode='ptb', size=size, batch=batch, bptt=bptt, validation_perplexity=curve,
                seconds=round(time.time() - start), params=sum(p.numel() for p in model.weights()))


def main(argv):
    if argv[0] == 'ptb':
        folder, size, batch, bptt, epochs = argv[1], *map(int, argv[2:6])
        torch.set_num_threads(int(argv[6]) if len(argv) > 6 else 1)
        print(json.dumps(ptb(folder, size, batch, bptt, epochs)))
        return
    mode, (size, batch, bptt, steps) = argv[0], map(int, argv[1:5])
    torch.set_num_threads(int(argv[5]) if len(argv) > 5 else 1)
    print(json.dumps(bench(mode, size, batch, bptt, steps)))


if __name__ == '__main__':
    main(sys.argv[1:])
