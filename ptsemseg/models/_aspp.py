"""The ASPP of the TorchSeg code base (furnace/seg_opr), shared by SA-Gate and Malleable 2.5D, whose authors both
built on it: parallel 1×1 and atrous 3×3 branches, concatenated, normalised, activated and projected, plus an
image-pooling branch projected alike; their sum normalised and activated."""
import torch
import torch.nn as nn


class TorchSegASPP(nn.Module):
    """ASPP(in -> out) with `hidden_channels` per branch, atrous `rates`, `activation` (ReLU or LeakyReLU) after
    every norm; `activate_pool`: whether the pooled branch is activated before its projection (SA-Gate: yes,
    Malleable 2.5D: no)."""

    def __init__(self, in_channels, out_channels, rates, hidden_channels, activation, activate_pool):
        super().__init__()
        self.branches = nn.ModuleList([nn.Conv2d(in_channels, hidden_channels, 1, bias=False)] + [
            nn.Conv2d(in_channels, hidden_channels, 3, padding=rate, dilation=rate, bias=False) for rate in rates])
        self.branch_norm = nn.BatchNorm2d(hidden_channels * len(self.branches))
        self.project = nn.Conv2d(hidden_channels * len(self.branches), out_channels, 1, bias=False)
        self.pool_conv = nn.Conv2d(in_channels, hidden_channels, 1, bias=False)
        self.pool_norm = nn.BatchNorm2d(hidden_channels)
        self.pool_project = nn.Conv2d(hidden_channels, out_channels, 1, bias=False)
        self.out_norm = nn.BatchNorm2d(out_channels)
        self.activation = activation
        self.activate_pool = activate_pool

    def forward(self, x):
        out = self.project(self.activation(self.branch_norm(torch.cat([branch(x) for branch in self.branches], 1))))
        pooled = self.pool_norm(self.pool_conv(x.mean(dim=(2, 3), keepdim=True)))
        pooled = self.activation(pooled) if self.activate_pool else pooled
        return self.activation(self.out_norm(out + self.pool_project(pooled)))
