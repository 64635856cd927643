"""PyTorch measuring stick for the NAS-Bench-201 space: the DARTS supernet and the retraining network.

An independent PyTorch model of the NAS-Bench-201 networks (Dong & Yang, ICLR 2020) as this project
defines them, used only for side-by-side speed and parameter-count comparisons with the NNabla code.
It is NOT a dependency of the project and is never imported by it; run it in a scratch virtualenv:

    python3.11 -m venv /tmp/torchnb201 && /tmp/torchnb201/bin/pip install torch==2.13.0 numpy
    /tmp/torchnb201/bin/python benchmarks/torch_nb201.py search C N BATCH STEPS THREADS
    /tmp/torchnb201/bin/python benchmarks/torch_nb201.py train ARCH_STRING C N BATCH STEPS THREADS
    /tmp/torchnb201/bin/python benchmarks/torch_nb201.py count ARCH_STRING C N

search: one first-order DARTS step (alpha step with Adam on a 'validation' batch, then weight step with
SGD on a 'training' batch) on random 32x32 inputs; train: one retraining step of the network of
ARCH_STRING (e.g. '|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|');
count: trainable parameters and multiply-adds per 32x32 image (convolutions and linear layers only).
One warm-up step, then STEPS timed steps; the median seconds per step is reported. The last line
printed is one JSON object.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

OPS = ['none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3']
EDGES = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]  # (j, i): the edge j <- i, alpha row order


class Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def relu_conv_bn(c_in, c_out, k, stride, affine=True, track=True):
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track))


def make_op(name, c, affine=True, track=True):
    return {'none': Zero, 'skip_connect': nn.Identity,
            'nor_conv_1x1': lambda: relu_conv_bn(c, c, 1, 1, affine, track),
            'nor_conv_3x3': lambda: relu_conv_bn(c, c, 3, 1, affine, track),
            'avg_pool_3x3': lambda: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)}[name]()


class ResBlock(nn.Module):
    """ReLU-conv3x3/2-BN, ReLU-conv3x3-BN, plus an AvgPool2d(2)+conv1x1 shortcut."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.a = relu_conv_bn(c_in, c_out, 3, 2)
        self.b = relu_conv_bn(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
        return self.shortcut(x) + self.b(self.a(x))


class MixedOp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ops = nn.ModuleList(make_op(name, c, affine=False, track=False) for name in OPS)

    def forward(self, x, w):
        return sum(w[k] * op(x) for k, op in enumerate(self.ops))


class Cell(nn.Module):
    """Node j = sum over i < j of edge (j, i) applied to node i; the output is node 3. With arch=None
    every edge is a MixedOp, weighted by the softmax of the alphas given to forward."""

    def __init__(self, c, arch=None):
        super().__init__()
        self.edges = nn.ModuleList(MixedOp(c) if arch is None else make_op(arch[edge], c) for edge in EDGES)

    def forward(self, x, weights=None):
        nodes = [x]
        for j in (1, 2, 3):
            nodes.append(sum(self.edges[e](nodes[i], *(() if weights is None else (weights[e],)))
                             for e, (jj, i) in enumerate(EDGES) if jj == j))
        return nodes[3]


class Network(nn.Module):
    """stem, N cells at C, ResBlock C->2C, N cells at 2C, ResBlock 2C->4C, N cells at 4C, BN-ReLU-GAP-linear.
    With arch=None it is the DARTS supernet (one 6x5 alpha matrix shared by every cell)."""

    def __init__(self, C, N, arch=None, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers = []
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                layers.append(ResBlock(c // 2, c))
            layers += [Cell(c, arch) for _ in range(N)]
        self.layers = nn.ModuleList(layers)
        self.last = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU())
        self.classifier = nn.Linear(4 * C, num_classes)
        self.alphas = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPS))) if arch is None else None

    def weights(self):
        return [p for name, p in self.named_parameters() if name != 'alphas']

    def forward(self, x):
        w = F.softmax(self.alphas, dim=-1) if self.alphas is not None else None
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x) if isinstance(layer, ResBlock) else layer(x, w)
        x = self.last(x).mean((2, 3))
        return self.classifier(x)


def parse_arch(s):
    """'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' -> {(j, i): op}."""
    nodes = s.strip().split('+')
    if len(nodes) != 3:
        raise ValueError('expected 3 nodes in ' + s)
    arch = {}
    for j, node in enumerate(nodes, start=1):
        for token in (t for t in node.strip().strip('|').split('|') if t):
            name, i = token.split('~')
            if name not in OPS or not 0 <= int(i) < j or (j, int(i)) in arch:
                raise ValueError('bad edge {!r} of node {} in {}'.format(token, j, s))
            arch[(j, int(i))] = name
    if len(arch) != len(EDGES):
        raise ValueError('missing edges in ' + s)
    return arch


def count_madds(model):
    """Multiply-adds of the convolutions and linear layers for one 32x32 image, from forward hooks
    (the hooks stay: the model given is a throw-away copy)."""
    total = [0]

    def hook(module, inputs, output):  # batch of one image
        if isinstance(module, nn.Conv2d):
            total[0] += output.numel() * module.in_channels // module.groups * module.weight[0, 0].numel()
        else:
            total[0] += module.in_features * module.out_features

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 32, 32))
    return total[0]


def time_steps(step, steps):
    step()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print('seconds per step:', ' '.join('{:.4f}'.format(t) for t in times))
    return statistics.median(times)


def batch(n):
    return torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='command', required=True)
    for name, fields in (('search', 'C N batch steps threads'), ('train', 'arch C N batch steps threads'),
                         ('count', 'arch C N')):
        q = sub.add_parser(name)
        for field in fields.split():
            q.add_argument(field, type=str if field == 'arch' else int)
    args = p.parse_args()
    torch.manual_seed(0)
    arch = None if args.command == 'search' else parse_arch(args.arch)
    model = Network(args.C, args.N, arch)
    weights = model.weights()
    result = {'params': sum(p.numel() for p in weights if p.requires_grad), 'madds': count_madds(Network(args.C, args.N, arch))}
    if args.command == 'count':
        print('params {:.6f} M, multiply-adds {:.5f} M per 32x32 image'.format(result['params'] / 1e6,
                                                                              result['madds'] / 1e6))
        print(json.dumps(result))
        return
    torch.set_num_threads(args.threads)
    model.train()
    w_opt = torch.optim.SGD(weights, lr=0.025 if arch is None else 0.1, momentum=0.9, nesterov=True,
                            weight_decay=5e-4)
    x_t, y_t = batch(args.batch)
    x_v, y_v = batch(args.batch)

    def step():
        if arch is None:  # first-order DARTS: the alpha step on the 'validation' batch comes first
            a_opt.zero_grad()
            F.cross_entropy(model(x_v), y_v).backward()
            a_opt.step()
        w_opt.zero_grad()
        F.cross_entropy(model(x_t), y_t).backward()
        nn.utils.clip_grad_norm_(weights, 5.0)
        w_opt.step()

    if arch is None:
        a_opt = torch.optim.Adam([model.alphas], lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
        result['alphas'] = model.alphas.numel()
    print(json.dumps({'sec_per_step': round(time_steps(step, args.steps), 4), **result}))


if __name__ == '__main__':
    main()
