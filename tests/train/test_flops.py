"""Compute accounting: FlopCounterMode's counts equal a hand count, forward and backward."""

import torch
from torch import nn

from jessl.train.flops import FlopMeter, count_flops, hard_augment_overhead_eq11, shape_key


def _net():
    # conv 3->8 (3x3, pad 1) on 8x8, ReLU, flatten, linear 512->10; no biases in the count
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 8 * 8, 10))


def test_small_conv_net_matches_a_hand_count():
    b, conv_macs, fc_macs = 2, 2 * 8 * 8 * 8 * 3 * 3 * 3, 2 * 512 * 10  # per batch
    net, x = _net(), torch.randn(b, 3, 8, 8)
    forward, y = count_flops(net, x)
    assert forward == 2 * (conv_macs + fc_macs)  # 2 FLOPs per multiply-add
    backward, _ = count_flops(y.sum().backward)
    # weight gradients of both layers, the input gradient of the linear layer only: the conv's
    # input is the image, which needs none, so backward is not 2x forward
    assert backward == 2 * (conv_macs + 2 * fc_macs)
    assert backward != 2 * forward


def test_meter_measures_each_key_once_and_accumulates():
    net, meter = _net(), FlopMeter(scale=2)
    calls = []
    for size in (8, 8, 4):
        x = torch.randn(2, 3, size, size)
        key = shape_key([x])
        calls.append(meter.known("forward", key))
        with meter.measure("forward", key):
            nn.functional.conv2d(x, net[0].weight, padding=1)
        meter.add("forward", key)
    assert calls == [False, True, False]
    big, small = meter.cache[("forward", ((2, 3, 8, 8),))], meter.cache[("forward", ((2, 3, 4, 4),))]
    assert big == 4 * small  # a conv's cost goes with the pixels
    assert meter.total == 2 * (2 * big + small) == meter.by_part["forward"]  # 2 processes


def test_eq11_overhead_is_the_papers_five_percent():
    assert abs(hard_augment_overhead_eq11(224, 64, 4) - 0.054) < 0.001
