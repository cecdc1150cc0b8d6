"""Depth accuracy as on synface (spec §11.2) and sample quality of the default GAN (KID).

Depth: SIDE, MAD, and masked MAE/MSE, per image. Predicted depth is the reconstruction warped into
the input view (values in [0.8, 1.2]); both masks are eroded by one pixel before they are
multiplied. SIDE is returned raw (the paper's tables show it ×10⁻², i.e. 100 × the raw value); MAD
is in degrees.

Samples: KID (kernel inception distance, unbiased MMD² with the cubic polynomial kernel) on the
offline ImageNet MobileNetV2 (pooled 1280-d features) instead of Inception, which cannot be
obtained here: values are comparable with each other, not with published KID/FID numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .losses import imagenet_normalise, load_mobilenet_features
from .render import Camera, normals_from_depth


def erode(mask: torch.Tensor) -> torch.Tensor:
    """B×H×W mask -> pixels whose whole 3×3 neighbourhood is inside (zero padding counts as outside)."""
    pooled = F.avg_pool2d(mask[:, None].float(), 3, stride=1, padding=1, count_include_pad=True)
    return pooled[:, 0] > 0.99


def gt_mask(depth_gt: torch.Tensor) -> torch.Tensor:
    """Object pixels of ground-truth depth: nearer than the farthest value of the batch (the background)."""
    return depth_gt < depth_gt.max()


@dataclass
class DepthMetrics:
    """Per-image values (each a tensor of B)."""

    side: torch.Tensor
    mad: torch.Tensor
    mae: torch.Tensor
    mse: torch.Tensor
    pixels: torch.Tensor  # number of pixels in the evaluated mask

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean ± std (population) of each metric, SIDE also in the paper's ×10⁻² unit."""
        out = {}
        for name, values in (("side_x100", self.side * 100), ("mad_deg", self.mad), ("mae", self.mae),
                             ("mse", self.mse)):
            v = values.double()
            out[name] = {"mean": float(v.mean()), "std": float(v.std(unbiased=False)) if len(v) > 1 else 0.0}
        return out


def depth_metrics(depth_pred: torch.Tensor, depth_gt: torch.Tensor, mask_pred: torch.Tensor, cam: Camera,
                  mask_gt: torch.Tensor | None = None) -> DepthMetrics:
    """SIDE, MAD (degrees), MAE, MSE of B×H×W depths over erode(mask_gt) · erode(mask_pred).

    mask_gt defaults to the synface rule `depth_gt < max(depth_gt)`; pass an exact mask when known.
    Images whose evaluated mask is empty get NaN.
    """
    mask_gt = gt_mask(depth_gt) if mask_gt is None else mask_gt.bool()
    mask = (erode(mask_gt) & erode(mask_pred.bool())).to(depth_pred.dtype)
    count = mask.sum((1, 2))
    denom = count.where(count > 0, torch.full_like(count, math.nan))
    delta = (depth_pred.log() - depth_gt.log()) * mask
    mu = delta.sum((1, 2)) / denom
    side = (((delta - mu[:, None, None]) ** 2 * mask).sum((1, 2)) / denom).sqrt()
    cos = (normals_from_depth(depth_pred, cam) * normals_from_depth(depth_gt, cam)).sum(-1).clamp(-1, 1)
    mad = (torch.rad2deg(torch.acos(cos)) * mask).sum((1, 2)) / denom
    diff = (depth_pred - depth_gt) * mask
    mae = diff.abs().sum((1, 2)) / denom
    mse = diff.square().sum((1, 2)) / denom
    return DepthMetrics(side=side, mad=mad, mae=mae, mse=mse, pixels=count)


def kid(feats_a: torch.Tensor, feats_b: torch.Tensor, subsets: int = 10, subset_size: int = 100,
        generator: torch.Generator | None = None) -> tuple[float, float]:
    """Mean and std over random subsets of the unbiased MMD² with k(x, y) = (x·y / d + 1)³."""
    m = min(subset_size, len(feats_a), len(feats_b))
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    d = feats_a.shape[1]
    values = []
    for _ in range(subsets):
        a = feats_a[torch.randperm(len(feats_a), generator=generator)[:m]].double()
        b = feats_b[torch.randperm(len(feats_b), generator=generator)[:m]].double()
        k_aa, k_bb, k_ab = ((x @ y.T / d + 1) ** 3 for x, y in ((a, a), (b, b), (a, b)))
        off = (k_aa.sum() - k_aa.diagonal().sum() + k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
        values.append(float(off - 2 * k_ab.mean()))
    v = torch.tensor(values)
    return float(v.mean()), float(v.std(unbiased=False))


class MobileNetEmbedding(nn.Module):
    """Images in [-1, 1] (B×3×H×W) -> pooled ImageNet MobileNetV2 features (B×1280), resized to `size`."""

    def __init__(self, size: int = 128):
        super().__init__()
        self.features = load_mobilenet_features()
        self.size = size
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.clamp(-1, 1), size=self.size, mode="bilinear", align_corners=False)
        return self.features(imagenet_normalise(x)).mean((2, 3))
