"""MAGVIT-v2, the image tokenizer of Show-o: a convolutional encoder/decoder around a lookup-free
quantiser (LFQ). A code is a ``z_channels``-bit integer whose bits, most significant first, are
the signs of the latent channels, so decoding needs no learnt codebook.

Module and buffer names follow the published ``showlab/magvitv2`` state dict (``encoder.*``,
``decoder.*``, ``quantize.embedding``, ``quantize.power_vals``) so it loads with ``strict=True``.
Decoding is what generation needs; encoding is kept because regeneration from a previous image
(PARM++) starts from its codes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from actors.showo.config import MagvitConfig


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels of a feature map."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)
        q, k, v = (
            conv(normed).reshape(b, 1, c, h * w).transpose(-1, -2) for conv in (self.q, self.k, self.v)
        )
        out = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Downsample(nn.Module):
    """Stride-2 convolution with the asymmetric (right/bottom) zero padding of the published model."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Level(nn.Module):
    """One resolution level: residual blocks, optional attention after each, optional resampler.
    The resampler is registered as ``downsample`` or ``upsample`` to match the published names."""

    def __init__(self, channels_in: int, channels_out: int, num_blocks: int, with_attn: bool):
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(channels_in if i == 0 else channels_out, channels_out) for i in range(num_blocks)
        )
        self.attn = nn.ModuleList(AttnBlock(channels_out) for _ in range(num_blocks if with_attn else 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        return x


class Middle(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, cfg: MagvitConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, kernel_size=3, padding=1)
        self.down = nn.ModuleList()
        channels, res = cfg.ch, cfg.resolution
        last = len(cfg.encoder_ch_mult) - 1
        for i, (mult, blocks) in enumerate(zip(cfg.encoder_ch_mult, cfg.encoder_num_res_blocks, strict=True)):
            level = Level(channels, cfg.ch * mult, blocks, res in cfg.attn_resolutions)
            channels = cfg.ch * mult
            if i != last:
                level.downsample = Downsample(channels)
                res //= 2
            self.down.append(level)
        self.mid = Middle(channels)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, cfg.z_channels, kernel_size=3, padding=1)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.quant_conv(self.conv_out(F.silu(self.norm_out(h))))


class Decoder(nn.Module):
    def __init__(self, cfg: MagvitConfig):
        super().__init__()
        mults, num_blocks = cfg.decoder_ch_mult, cfg.decoder_num_res_blocks
        if len(mults) != len(num_blocks):
            raise ValueError("MAGVIT-v2 config: decoder_ch_mult and decoder_num_res_blocks differ in length")
        channels = cfg.ch * mults[-1]
        res = cfg.resolution // 2 ** (len(mults) - 1)
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, channels, kernel_size=3, padding=1)
        self.mid = Middle(channels)
        levels: list[Level] = []
        for i in reversed(range(len(mults))):  # built coarse to fine, stored fine to coarse
            level = Level(channels, cfg.ch * mults[i], num_blocks[i], res in cfg.attn_resolutions)
            channels = cfg.ch * mults[i]
            if i != 0:
                level.upsample = Upsample(channels)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, cfg.out_channels, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(self.post_quant_conv(z)))
        for level in reversed(self.up):
            h = level(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class LookupFreeQuantizer(nn.Module):
    """Codes <-> sign patterns. Both tables are persistent buffers in the published state dict."""

    def __init__(self, bits: int):
        super().__init__()
        powers = 2 ** torch.arange(bits - 1, -1, -1)
        signs = (torch.arange(2**bits)[:, None] // powers) % 2
        self.register_buffer("embedding", signs.float() * 2 - 1)
        self.register_buffer("power_vals", powers)

    def codes_to_latents(self, codes: torch.Tensor, side: int) -> torch.Tensor:
        """(B, side*side) codes -> (B, bits, side, side) latents of +-1."""
        latents = self.embedding[codes.reshape(-1)]
        return latents.view(codes.shape[0], side, side, -1).permute(0, 3, 1, 2).contiguous()

    def latents_to_codes(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, bits, H, W) -> (B, H*W) codes: a positive channel is a set bit."""
        bits = (latents > 0).long()
        return (bits * self.power_vals.view(1, -1, 1, 1)).sum(1).flatten(1)


class Magvit2(nn.Module):
    def __init__(self, cfg: MagvitConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = LookupFreeQuantizer(cfg.z_channels)

    def decode_codes(self, codes: torch.Tensor, side: int) -> torch.Tensor:
        """(B, side*side) codes -> (B, 3, H, W) pixels in [-1, 1] (not clamped)."""
        latents = self.quantize.codes_to_latents(codes, side).to(self.decoder.conv_in.weight.dtype)
        return self.decoder(latents)
