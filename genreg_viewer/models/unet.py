"""A small U-Net (Ronneberger et al. 2015) for the deep image prior family.

Used untrained by DIP (Ulyanov, Vedaldi, Lempitsky 2018, "Deep image prior") from a fixed random code, and by
educated DIP (Barbano, Leuschner, Schmidt, Denker, Hauptmann, Maass, Jin 2021) warm-started from weights pretrained
to map adjoint reconstructions to ground truth. Blocks are ``3 x 3`` conv - GroupNorm - LeakyReLU (batch-independent
normalisation, so a network fitted to one image behaves the same as in batched pretraining); down-sampling by
stride-2 convolution, up-sampling bilinear, skip connections by concatenation. Image side lengths must be
divisible by ``2^(levels-1)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: the U-Net channels per level used by DIP and eDIP (``UNet(1, DIP_CHANNELS)``)
DIP_CHANNELS = (16, 32, 64)


def _block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.GroupNorm(min(4, out_channels), out_channels),
        nn.LeakyReLU(0.2, inplace=True),
    )


class UNet(nn.Module):
    """``channels = (c_0, ..., c_{L-1})``: level ``l`` works at ``1/2^l`` resolution with ``c_l`` channels.

    Input ``(B, in_channels, H, W)``, output ``(B, 1, H, W)`` (a linear final ``1 x 1`` conv, no clipping). With
    ``residual`` (one input channel only) the output is ``input + network(input)``: the form used when the input is
    already an image estimate (educated DIP's adjoint input), not for DIP's random code; the last layer then starts at
    zero, so the untrained network is the identity.
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (16, 32, 64), skip_channels: int = 4,
                 residual: bool = False):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ValueError("a U-Net needs at least two levels")
        if len(channels) > 8 or not all(1 <= c <= 1024 for c in channels):
            raise ValueError(f"U-Net channels must be 2 to 8 levels of 1 to 1024 channels, got {list(channels)}")
        if not 1 <= int(in_channels) <= 64 or not 0 <= int(skip_channels) <= 256:
            raise ValueError(f"U-Net in_channels must be in [1, 64] and skip_channels in [0, 256], got "
                             f"{in_channels!r}, {skip_channels!r}")
        if residual and in_channels != 1:
            raise ValueError("a residual U-Net needs exactly one input channel")
        self.residual = bool(residual)
        self.config = {"in_channels": int(in_channels), "channels": list(channels), "skip_channels": int(skip_channels),
                       "residual": self.residual}
        self.encoders = nn.ModuleList()
        previous = in_channels
        for level, c in enumerate(channels):
            stride = 1 if level == 0 else 2
            self.encoders.append(nn.Sequential(_block(previous, c, stride), _block(c, c)))
            previous = c
        self.skips = nn.ModuleList(_block(c, skip_channels) for c in channels[:-1])
        self.decoders = nn.ModuleList(
            nn.Sequential(_block(channels[level + 1] + skip_channels, channels[level]),
                          _block(channels[level], channels[level]))
            for level in range(len(channels) - 1)
        )
        self.head = nn.Conv2d(channels[0], 1, 1)
        if self.residual:  # start as the identity map on the input image
            nn.init.zeros_(self.head.weight)
            assert self.head.bias is not None
            nn.init.zeros_(self.head.bias)

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.encoders) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.divisor or x.shape[-2] % self.divisor:
            raise ValueError(f"U-Net input size {tuple(x.shape[-2:])} must be divisible by {self.divisor}")
        features = []
        h = x
        for encoder in self.encoders:
            h = encoder(h)
            features.append(h)
        h = features[-1]
        for level in reversed(range(len(self.decoders))):
            h = F.interpolate(h, size=features[level].shape[-2:], mode="bilinear", align_corners=False)
            h = self.decoders[level](torch.cat([h, self.skips[level](features[level])], dim=1))
        out = self.head(h)
        return x + out if self.residual else out


__all__ = ["UNet"]
