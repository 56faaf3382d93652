"""A 3D U-Net denoiser: GroupNorm, SiLU, sinusoidal time embedding, attention at the coarsest level.

The network sees the noisy target and the conditioning volume (the LR scan
interpolated to the HR grid) as input channels, SR3-style, and is configured
by plain arguments so that the ``model:`` config section maps onto the
constructor without glue.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps ``t`` (shape ``(batch,)``) into ``dim`` features."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * frequencies[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def _groups(channels: int) -> int:
    """Largest group count <= 8 dividing ``channels``."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class ResBlock(nn.Module):
    """Two 3x3x3 convolutions with a time-embedding shift in between and a skip connection."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_dim, out_channels)
        self.norm2 = nn.GroupNorm(_groups(out_channels), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, time_embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(time_embedding)[:, :, None, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all voxels; used only where the grid is coarsest."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.attention = nn.MultiheadAttention(channels, heads if channels % heads == 0 else 1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *spatial = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return x + attended.transpose(1, 2).reshape(batch, channels, *spatial)


class UNet3D(nn.Module):
    """3D U-Net mapping ``(noisy, condition)`` channels and a timestep to one output channel.

    Spatial sizes must be divisible by ``2 ** (len(channel_mult) - 1)``.
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        base_channels: int = 16,
        channel_mult: tuple[int, ...] = (1, 2, 4),
        num_res_blocks: int = 1,
        attention: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.base_channels = base_channels
        self.downsampling = 2 ** (len(channel_mult) - 1)
        time_dim = base_channels * 4
        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        self.stem = nn.Conv3d(in_channels, base_channels, 3, padding=1)

        widths = [base_channels * m for m in channel_mult]
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skip_widths = []
        current = base_channels
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(current, width, time_dim, dropout))
                current = width
            self.down_blocks.append(blocks)
            skip_widths.append(current)
            last = level == len(widths) - 1
            self.downsamplers.append(nn.Identity() if last else nn.Conv3d(current, current, 3, stride=2, padding=1))

        self.mid_block1 = ResBlock(current, current, time_dim, dropout)
        self.mid_attention = AttentionBlock(current) if attention else nn.Identity()
        self.mid_block2 = ResBlock(current, current, time_dim, dropout)

        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            blocks = nn.ModuleList()
            for index in range(num_res_blocks):
                blocks.append(ResBlock(current + (skip_widths[level] if index == 0 else 0), width, time_dim, dropout))
                current = width
            self.up_blocks.append(blocks)
            self.upsamplers.append(nn.Identity() if level == 0 else nn.Conv3d(current, current, 3, padding=1))

        self.head = nn.Sequential(
            nn.GroupNorm(_groups(current), current), nn.SiLU(), nn.Conv3d(current, out_channels, 3, padding=1)
        )
        # A zero-initialised output layer starts training from "no correction to the interpolation".
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if any(size % self.downsampling for size in x.shape[2:]):
            raise ValueError(f"spatial size {tuple(x.shape[2:])} is not divisible by {self.downsampling}")
        time_embedding = self.time_mlp(timestep_embedding(t, self.base_channels))
        h = self.stem(x)
        skips = []
        for blocks, downsample in zip(self.down_blocks, self.downsamplers):
            for block in blocks:
                h = block(h, time_embedding)
            skips.append(h)
            h = downsample(h)
        h = self.mid_block2(self.mid_attention(self.mid_block1(h, time_embedding)), time_embedding)
        for blocks, upsample in zip(self.up_blocks, self.upsamplers):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, time_embedding)
            if not isinstance(upsample, nn.Identity):
                h = upsample(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.head(h)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, the CPU otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
