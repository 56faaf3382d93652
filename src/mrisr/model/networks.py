"""The denoisers: a U-Net (GroupNorm, SiLU, sinusoidal time embedding, attention at the coarsest level)
in 3D or 2D, and the tri-planar model made of three 2D U-Nets.

A network sees the noisy target and the conditioning volume (the LR scan
interpolated to the HR grid) as input channels, SR3-style, and is configured
by plain arguments so that the ``network:`` config section maps onto the
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


def _conv(spatial_dims: int) -> type[nn.Module]:
    """The convolution class for 2D or 3D grids."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return nn.Conv3d if spatial_dims == 3 else nn.Conv2d


class ResBlock(nn.Module):
    """Two 3x3(x3) convolutions with a time-embedding shift in between and a skip connection."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, dropout: float = 0.0,
                 spatial_dims: int = 3) -> None:
        super().__init__()
        conv = _conv(spatial_dims)
        self.norm1 = nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = conv(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_dim, out_channels)
        self.norm2 = nn.GroupNorm(_groups(out_channels), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1)
        self.skip = conv(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, time_embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        shift = self.time(time_embedding)
        h = h + shift.view(*shift.shape, *([1] * (h.ndim - 2)))
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


class UNet(nn.Module):
    """U-Net mapping ``(noisy, condition)`` channels and a timestep to one output channel.

    The architecture arguments are the config's ``network:`` section (no defaults here: they live in the config).

    Spatial sizes must be divisible by ``2 ** (len(channel_mult) - 1)``.
    With ``spatial_dims=2`` every layer is 2D; such a network takes ``(B, C, H, W)``
    or a 5D slab with exactly one spatial axis of length 1 (which it squeezes and
    restores), so that 3D patch samplers and the sliding window feed it slices unchanged.
    """

    def __init__(
        self,
        *,
        base_channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int,
        attention: bool,
        dropout: float,
        in_channels: int = 2,
        out_channels: int = 1,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        conv = _conv(spatial_dims)
        self.spatial_dims = spatial_dims
        self.base_channels = base_channels
        self.downsampling = 2 ** (len(channel_mult) - 1)
        time_dim = base_channels * 4
        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        self.stem = conv(in_channels, base_channels, 3, padding=1)

        widths = [base_channels * m for m in channel_mult]
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skip_widths = []
        current = base_channels
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(current, width, time_dim, dropout, spatial_dims))
                current = width
            self.down_blocks.append(blocks)
            skip_widths.append(current)
            last = level == len(widths) - 1
            self.downsamplers.append(nn.Identity() if last else conv(current, current, 3, stride=2, padding=1))

        self.mid_block1 = ResBlock(current, current, time_dim, dropout, spatial_dims)
        self.mid_attention = AttentionBlock(current) if attention else nn.Identity()
        self.mid_block2 = ResBlock(current, current, time_dim, dropout, spatial_dims)

        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            blocks = nn.ModuleList()
            for index in range(num_res_blocks):
                blocks.append(ResBlock(current + (skip_widths[level] if index == 0 else 0), width, time_dim,
                                       dropout, spatial_dims))
                current = width
            self.up_blocks.append(blocks)
            self.upsamplers.append(nn.Identity() if level == 0 else conv(current, current, 3, padding=1))

        self.head = nn.Sequential(
            nn.GroupNorm(_groups(current), current), nn.SiLU(), conv(current, out_channels, 3, padding=1)
        )
        # A zero-initialised output layer starts training from "no correction to the interpolation".
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.spatial_dims == 2 and x.ndim == 5:
            flat = [axis for axis in (2, 3, 4) if x.shape[axis] == 1]
            if not flat:
                raise ValueError(f"a 2D U-Net needs a slab with one spatial axis of length 1, got {tuple(x.shape[2:])}")
            return self.forward(x.squeeze(flat[0]), t).unsqueeze(flat[0])
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(f"expected a {self.spatial_dims}D batch (B, C, ...), got shape {tuple(x.shape)}")
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


class TriplanarUNet(nn.Module):
    """Three 2D U-Nets, one per orthogonal plane (the seed's cheaper variant of the 3D model).

    A batch of slabs one voxel thin along array axis ``a`` (sagittal, coronal,
    axial for a = 0, 1, 2) goes to ``planes[a]``; the sampler fuses the three
    planes' predictions of the whole volume at every step.
    """

    def __init__(self, **network: object) -> None:
        super().__init__()
        self.planes = nn.ModuleList(UNet(**network, spatial_dims=2) for _ in range(3))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.planes[thin_axis(x.shape[2:])](x, t)


def thin_axis(spatial_shape: tuple[int, ...]) -> int:
    """The axis along which a 3D slab is one voxel thin."""
    thin = [axis for axis, size in enumerate(spatial_shape) if size == 1]
    if len(thin) != 1:
        raise ValueError(f"a tri-planar network needs slabs one voxel thin along one axis, got {tuple(spatial_shape)}")
    return thin[0]


def slab_shapes(patch_size: list[int]) -> list[list[int]]:
    """The three slabs of a tri-planar model for a 3D ``patch_size``: thin along each axis in turn."""
    return [[1 if axis == thin else size for axis, size in enumerate(patch_size)] for thin in range(3)]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, the CPU otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
