"""The light rig: the engine's Lambertian light as a sun and a world light an artist can use.

Engine model (stored values): shading = k_a + k_d·max(0, n·d), light travelling along d. In Cycles
a white world of strength s lights an open diffuse surface to ρ·s at any orientation, and a Sun of
strength E adds ρ·E·cosθ/π, so s = k_a and E = π·k_d (architecture.md). Blender's glTF importer
turns a directional light's lux into W/m² by dividing by 683, hence the glTF intensity 683·E.
"""

from __future__ import annotations

import math

import numpy as np

from .frame import AssetFrame, direction_to_asset

LUMENS_PER_WATT = 683.0  # Blender's glTF import/export conversion for photometric units


def quaternion_aiming_minus_z(direction: np.ndarray) -> list[float]:
    """glTF rotation (x, y, z, w) that turns the node's −Z axis onto the unit `direction`."""
    src = np.array([0.0, 0.0, -1.0])
    dst = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
    dot = float(src @ dst)
    if dot < -1 + 1e-12:  # opposite: half a turn about any axis perpendicular to −Z
        return [1.0, 0.0, 0.0, 0.0]
    axis = np.cross(src, dst)
    quat = np.array([*axis, 1.0 + dot])
    return (quat / np.linalg.norm(quat)).tolist()


def light_rig(light: dict, frame: AssetFrame, fov_deg: float) -> dict:
    """The rig for a bundle's `light` entry (ambient, diffuse, direction in the engine frame)."""
    k_a, k_d = float(light["ambient"]), float(light["diffuse"])
    d_engine = np.asarray(light["direction"], dtype=np.float64)
    d_asset = direction_to_asset(d_engine / np.linalg.norm(d_engine))
    strength = math.pi * max(k_d, 0.0)
    return {
        "frame": "gltf-y-up",
        "sun": {"direction": d_asset.tolist(), "engine_diffuse": k_d, "cycles_strength": strength,
                "gltf_intensity_lux": strength * LUMENS_PER_WATT, "clamped": k_d < 0,
                "rotation_xyzw": quaternion_aiming_minus_z(d_asset)},
        "ambient": {"engine_ambient": k_a, "world_strength": max(k_a, 0.0), "world_color": [1.0, 1.0, 1.0],
                    "clamped": k_a < 0},
        "camera": {"position": frame.to_asset(np.zeros(3)).tolist(), "fov_deg": fov_deg,
                   "look": [0.0, 0.0, -1.0], "up": [0.0, 1.0, 0.0]},
        "asset": frame.as_dict(),
        "engine_light": {"ambient": k_a, "diffuse": k_d, "direction": d_engine.tolist()},
    }
