"""Frames: the engine camera frame → Blender's world, for points, the light and the camera pose.

Engine camera frame: x right, y down, z forward (depth ≈ 1). glTF: Y up, the viewer on +Z.
Blender: Z up. Engine → glTF is (x, −y, −z) followed by the export's centring and scale; glTF →
Blender is (x, −z, y); together engine → Blender is (x, z, −y): the engine camera looks along
Blender's +Y (the front view). Pure numpy, so every sign is testable without Blender.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ENGINE_TO_GLTF = np.diag([1.0, -1.0, -1.0])
GLTF_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
ENGINE_TO_BLENDER = GLTF_TO_BLENDER @ ENGINE_TO_GLTF
# Blender cameras look down their local −Z with +Y up; the engine camera looks down +z with y down.
CAMERA_LOCAL_TO_ENGINE = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class Placement:
    """Where engine points land in Blender: p_blender = scale · ENGINE_TO_BLENDER · p_engine + offset."""

    scale: float = 1.0
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def from_asset(cls, centre, scale: float) -> Placement:
        """From the export's asset frame p_gltf = scale · (ENGINE_TO_GLTF · p_engine − centre) (docs/export.md)."""
        offset = -float(scale) * (GLTF_TO_BLENDER @ np.asarray(centre, float))
        return cls(float(scale), tuple(float(v) for v in offset))

    def point(self, p_engine) -> np.ndarray:
        return self.scale * (ENGINE_TO_BLENDER @ np.asarray(p_engine, float)) + np.asarray(self.offset)


def view_rotation(rotation_deg) -> np.ndarray:
    """R = Rz·Ry·Rx from (pitch about x, yaw about y, roll about z) in degrees (canonical → view)."""
    rx, ry, rz = (math.radians(float(a)) for a in rotation_deg)
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


def camera_matrix(rotation_deg, translation, rot_center_depth: float, placement: Placement) -> np.ndarray:
    """4×4 world matrix of a Blender camera that sees the canonical object as the engine's input view.

    The engine moves the object (P' = R(P − C) + C + T); here the object stays canonical and the camera
    moves by the inverse: its centre is Rᵀ(−T − C) + C and its axes are Rᵀ applied to the camera axes.
    """
    r = view_rotation(rotation_deg)
    c = np.array([0.0, 0.0, rot_center_depth])
    centre = r.T @ (-np.asarray(translation, float) - c) + c
    m = np.eye(4)
    m[:3, :3] = ENGINE_TO_BLENDER @ r.T @ CAMERA_LOCAL_TO_ENGINE
    m[:3, 3] = placement.point(centre)
    return m


def gltf_direction(direction_gltf) -> np.ndarray:
    """A direction in the asset (glTF) frame as a unit vector in Blender's frame."""
    d = GLTF_TO_BLENDER @ np.asarray(direction_gltf, float)
    return d / np.linalg.norm(d)


def camera_angle(image_size: int, fov_deg: float) -> float:
    """Blender camera angle (radians) whose pixel centres coincide with the engine's.

    The engine's fov spans the outer pixel centres (fx = (S − 1)/2 / tan(fov/2)); Blender's angle
    spans the outer pixel edges, S pixels wide.
    """
    half = math.tan(math.radians(fov_deg) / 2)
    return 2 * math.atan(half * image_size / (image_size - 1))
