"""View and light distributions of a synthetic data set, in the networks' normalised units.

The official code samples step-2 views from a multivariate normal estimated on its data set (spec
§5.1; issue #17: the mean/covariance of views and lights predicted by a trained Unsup3d), and uses the
light mean as the light net's offset (§2.5). For the embedded default we have exact ground truth, so
the distributions are estimated from the training renders themselves:

    .venv/bin/python -m engine.data.stats ~/.cache/gan2shape/synth-v1 weights/default

Units (§2.5): rotations / xyz_rotation_range, x/y translation / xy_translation_range; z translation is
not modelled (z_translation_range 0), so its variance is only a 1e-8 jitter. Light (l0, l1, l2, l3) =
(2·k_a − 1, 2·k_d − 1, l_x, l_y), the inverse of k_a = l0/2 + 0.5, k_d = l1/2 + 0.5, d ∝ (l2, l3, 1).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..io import atomic_path
from .shards import load

FILES = {"view": "view_mvn.pth", "light": "light_mvn.pth"}


def normalised_views(view: np.ndarray) -> np.ndarray:
    """Ground-truth views (N×6: radians, translation) → the view net's output units."""
    cfg = Config()
    scale = np.array([math.radians(cfg.xyz_rotation_range)] * 3 + [cfg.xy_translation_range] * 2 + [math.inf])
    return view.astype(np.float64) / scale  # z / inf = 0: not modelled


def normalised_lights(light: np.ndarray) -> np.ndarray:
    """Ground-truth lights (N×4: k_a, k_d, l_x, l_y) → the light net's output units."""
    light = light.astype(np.float64)
    return np.stack([2 * light[:, 0] - 1, 2 * light[:, 1] - 1, light[:, 2], light[:, 3]], axis=1)


def estimate(root: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Mean and covariance of the normalised views and lights of the data set at `root`."""
    data = load(root, ("view", "light"))
    out = {}
    for kind, values in (("view", normalised_views(data["view"])), ("light", normalised_lights(data["light"]))):
        cov = np.cov(values, rowvar=False) + 1e-8 * np.eye(values.shape[1])  # z is constant: keep it invertible
        out[kind] = {"mean": torch.tensor(values.mean(0), dtype=torch.float32),
                     "cov": torch.tensor(cov, dtype=torch.float32)}
    return out


def write(root: Path, out_dir: Path) -> list[Path]:
    """Estimate and write view_mvn.pth / light_mvn.pth (the official {'mean', 'cov'} layout)."""
    written = []
    for kind, mvn in estimate(root).items():
        target = out_dir / FILES[kind]
        with atomic_path(target) as tmp:
            torch.save(mvn, tmp)
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.data.stats", description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a data set written by `python -m engine synth`")
    parser.add_argument("out", type=Path, help="folder for view_mvn.pth and light_mvn.pth")
    args = parser.parse_args()
    for path in write(args.data, args.out):
        print(path)


if __name__ == "__main__":
    main()
