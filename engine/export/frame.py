"""The asset frame: glTF Y-up, the viewer on +Z, the object centred in a unit box.

Why: the engine frame (x right, y down, z forward, depth ≈ 1, object ~0.2 wide) is awkward in any
DCC tool. `(x, y, z)_engine → (x, −y, −z)` is a proper rotation (det +1, windings survive) that
makes +Y up and puts the camera on +Z; centring and scaling then give a unit-sized asset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_FLIP = np.array([1.0, -1.0, -1.0])
AXES = "(x, y, z)_engine -> (x, -y, -z)"


def direction_to_asset(direction: np.ndarray) -> np.ndarray:
    """Map engine-frame directions (…×3) to the asset frame (no centring or scaling)."""
    return np.asarray(direction, dtype=np.float64) * _FLIP


@dataclass(frozen=True)
class AssetFrame:
    """p_asset = scale · (flip(p_engine) − centre)."""

    centre: tuple[float, float, float]
    scale: float

    @classmethod
    def fit(cls, points_engine: np.ndarray) -> AssetFrame:
        """Centre the bounding box of the points at the origin and make its largest side 1."""
        flipped = np.asarray(points_engine, dtype=np.float64).reshape(-1, 3) * _FLIP
        lo, hi = flipped.min(axis=0), flipped.max(axis=0)
        size = float((hi - lo).max())
        return cls(centre=tuple(float(c) for c in (lo + hi) / 2), scale=1.0 / max(size, 1e-12))

    def to_asset(self, points_engine: np.ndarray) -> np.ndarray:
        return (np.asarray(points_engine, dtype=np.float64) * _FLIP - np.asarray(self.centre)) * self.scale

    def to_engine(self, points_asset: np.ndarray) -> np.ndarray:
        return (np.asarray(points_asset, dtype=np.float64) / self.scale + np.asarray(self.centre)) * _FLIP

    def as_dict(self) -> dict:
        return {"centre": list(self.centre), "scale": self.scale, "axes": AXES,
                "to_asset": "p_asset = scale * (flip(p_engine) - centre)"}
