"""The synthetic "default" category: deformed, textured Suzanne heads with exact ground truth.

Each image i of a run with seed S is drawn from its own random stream (SeedSequence([S, i])), so an
image does not depend on the batch size, the shard size or which other images were generated.

Image model (spec §3.9, engine frame, light given in the camera frame of the image):
    rgb = clamp(albedo · (k_a + k_d · max(0, n · d)), 0, 1),  d = normalise(l_x, l_y, 1)
with n the interpolated mesh normal oriented like spec §3.8 (a surface facing the camera has n_z > 0).
View = (rx, ry, rz, tx, ty, tz) moves the canonical object (centred at (0, 0, 1), facing the camera)
into the camera frame as in spec §3.3: P' = R (P - C) + C + T with R = Rz·Ry·Rx, C = (0, 0, 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .mesh import BaseMesh, load_base_mesh
from .raster import Intrinsics, rasterize

BACKGROUND_DEPTH = 1.1  # like synface ground truth: the background is the farthest depth


@dataclass(frozen=True)
class SynthConfig:
    """Distributions of shape, texture, view and light (angles in degrees)."""

    image_size: int = 64
    fov_deg: float = 10.0
    half_width: float = 0.072  # object half-width in camera units; the image spans ±0.0875 at depth 1
    yaw_deg: float = 45.0
    pitch_deg: float = 15.0
    roll_deg: float = 6.0
    shift_xy: float = 0.006
    shift_z: float = 0.01
    n_bumps: int = 6
    bump_amplitude: float = 0.12
    ambient: tuple[float, float] = (0.25, 0.55)
    diffuse: tuple[float, float] = (0.45, 0.85)
    light_x: tuple[float, float] = (-0.9, 0.9)
    light_y: tuple[float, float] = (-0.3, 0.8)
    background: float = 0.2  # grey level of the background in [0, 1]
    symmetric: bool = True  # mirror-symmetric shape and albedo (the method's flip assumption)


@dataclass
class SampleParams:
    """Everything random about a batch of images (one row per image)."""

    scale: np.ndarray  # B×3 anisotropic scale
    taper: np.ndarray  # B
    bend: np.ndarray  # B
    bump_centre: np.ndarray  # B×K×3 points on the base mesh
    bump_radius: np.ndarray  # B×K
    bump_amplitude: np.ndarray  # B×K
    colours: np.ndarray  # B×2×3 the two albedo colours
    wave: np.ndarray  # B×3×4 (direction·frequency xyz, phase) of the albedo pattern
    sharpness: np.ndarray  # B
    view: np.ndarray  # B×6 radians / camera units
    light: np.ndarray  # B×4 (k_a, k_d, l_x, l_y)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h[..., None] * 6) % 6
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def sample_params(cfg: SynthConfig, mesh: BaseMesh, seed: int, indices: np.ndarray) -> SampleParams:
    """Draw the parameters of images `indices` of run `seed`, each from its own stream."""
    rows = []
    for i in indices:
        rng = np.random.default_rng(np.random.SeedSequence([seed, int(i)]))
        k = cfg.n_bumps
        hue = rng.uniform(0, 1, 2)
        row = dict(
            scale=np.exp(rng.uniform(-0.12, 0.12, 3) + rng.uniform(-0.06, 0.06)),
            taper=rng.uniform(-0.25, 0.25),
            bend=rng.uniform(-0.25, 0.25),
            bump_centre=mesh.vertices[rng.integers(0, len(mesh.vertices), k)],
            bump_radius=rng.uniform(0.15, 0.45, k),
            bump_amplitude=rng.uniform(-cfg.bump_amplitude, cfg.bump_amplitude, k),
            colours=_hsv_to_rgb(hue, rng.uniform(0.15, 0.7, 2), rng.uniform(0.45, 0.9, 2)),
            wave=np.concatenate([rng.normal(0, 1, (3, 3)) * rng.uniform(1.5, 6.0, (3, 1)),
                                 rng.uniform(0, 2 * math.pi, (3, 1))], axis=1),
            sharpness=rng.uniform(1.0, 8.0),
            view=np.concatenate([np.radians(rng.uniform(-1, 1, 3) * [cfg.pitch_deg, cfg.yaw_deg, cfg.roll_deg]),
                                 rng.uniform(-1, 1, 3) * [cfg.shift_xy, cfg.shift_xy, cfg.shift_z]]),
            light=np.array([rng.uniform(*cfg.ambient), rng.uniform(*cfg.diffuse),
                            rng.uniform(*cfg.light_x), rng.uniform(*cfg.light_y)]),
        )
        rows.append(row)
    return SampleParams(**{key: np.stack([r[key] for r in rows]) for key in rows[0]})


def rotation_matrices(view: torch.Tensor) -> torch.Tensor:
    """R = Rz(rz)·Ry(ry)·Rx(rx) for view B×6 (spec §3.3)."""
    cx, cy, cz = torch.cos(view[:, :3]).unbind(1)
    sx, sy, sz = torch.sin(view[:, :3]).unbind(1)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).view(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).view(-1, 3, 3)
    return rz @ ry @ rx


def _mirror_x(p: torch.Tensor) -> torch.Tensor:
    return p * torch.tensor([-1.0, 1.0, 1.0], dtype=p.dtype)


def deform(mesh: BaseMesh, prm: SampleParams, symmetric: bool) -> torch.Tensor:
    """Base vertices -> deformed canonical vertices B×N×3 (still in base-mesh units)."""
    v = torch.from_numpy(mesh.vertices).double().unsqueeze(0)
    n = vertex_normals(v, torch.from_numpy(mesh.faces))
    centre = torch.from_numpy(prm.bump_centre).double()
    radius = torch.from_numpy(prm.bump_radius).double().unsqueeze(1)
    amp = torch.from_numpy(prm.bump_amplitude).double().unsqueeze(1)
    falloff = torch.exp(-torch.cdist(v.expand(len(centre), -1, -1), centre) ** 2 / (2 * radius**2))
    if symmetric:
        mirrored = torch.cdist(v.expand(len(centre), -1, -1), _mirror_x(centre)) ** 2
        falloff = torch.maximum(falloff, torch.exp(-mirrored / (2 * radius**2)))
    out = v + (falloff * amp).sum(-1, keepdim=True) * n
    x, y, z = out.unbind(-1)
    taper = torch.from_numpy(prm.taper).double().unsqueeze(1)
    bend = torch.from_numpy(prm.bend).double().unsqueeze(1)
    out = torch.stack([x * (1 + taper * y), y, z + bend * x**2], -1)
    return out * torch.from_numpy(prm.scale).double().unsqueeze(1)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Outward area-weighted unit vertex normals of B meshes (B×N×3)."""
    tri = verts[:, faces]
    fn = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    vn = torch.zeros_like(verts)
    for k in range(3):
        vn.index_add_(1, faces[:, k], fn)
    return torch.nn.functional.normalize(vn, dim=-1, eps=1e-12)


def albedo_pattern(canon: torch.Tensor, prm: SampleParams, symmetric: bool) -> torch.Tensor:
    """Albedo in [0, 1] at canonical base-mesh coordinates (B×H×W×3 -> B×H×W×3): two colours mixed
    by a smooth-edged sum of three plane waves."""
    if symmetric:
        canon = torch.cat([canon[..., :1].abs(), canon[..., 1:]], -1)
    wave = torch.from_numpy(prm.wave).double()  # B×3×4
    phase = torch.einsum("bhwc,bkc->bhwk", canon, wave[..., :3]) + wave[:, None, None, :, 3]
    field = torch.sin(phase).sum(-1) / math.sqrt(3)
    sharp = torch.from_numpy(prm.sharpness).double().view(-1, 1, 1)
    mix = torch.sigmoid(sharp * field).unsqueeze(-1)
    c = torch.from_numpy(prm.colours).double()
    return c[:, None, None, 0] * (1 - mix) + c[:, None, None, 1] * mix


def render(cfg: SynthConfig, mesh: BaseMesh, prm: SampleParams) -> dict[str, np.ndarray]:
    """Render a batch: rgb/albedo uint8 B×H×W×3, depth float32 B×H×W, normal float16 B×H×W×3,
    mask bool B×H×W, view float32 B×6, light float32 B×4."""
    cam = Intrinsics(cfg.image_size, cfg.fov_deg)
    canon = deform(mesh, prm, cfg.symmetric) * cfg.half_width  # object units -> camera units
    faces = torch.from_numpy(mesh.faces)
    view = torch.from_numpy(prm.view).double()
    rot = rotation_matrices(view)
    centre = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    verts = canon @ rot.transpose(1, 2) + centre + view[:, None, 3:]
    frags = rasterize(verts, faces, cam)
    mask = frags.face >= 0
    base = torch.from_numpy(mesh.vertices).double().expand(len(verts), -1, -1)
    albedo = albedo_pattern(frags.interpolate(base, faces), prm, cfg.symmetric)
    normal = -torch.nn.functional.normalize(frags.interpolate(vertex_normals(verts, faces), faces), dim=-1)
    # engine convention: normals point away from the camera; seen back faces are flipped too
    points = cam.back_project(frags.depth.where(mask, torch.ones_like(frags.depth)))
    facing = (normal * points).sum(-1, keepdim=True) < 0
    normal = torch.where(facing, -normal, normal)
    normal = normal.where(mask.unsqueeze(-1), torch.tensor([0.0, 0.0, 1.0], dtype=normal.dtype))
    light = torch.from_numpy(prm.light).double()
    direction = torch.nn.functional.normalize(torch.cat([light[:, 2:], torch.ones_like(light[:, :1])], 1), dim=1)
    diffuse = (normal * direction[:, None, None]).sum(-1).clamp(min=0)
    albedo8 = torch.round(albedo * 255).clamp(0, 255)
    shading = light[:, 0, None, None] + light[:, 1, None, None] * diffuse
    rgb = (albedo8 / 255 * shading.unsqueeze(-1)).clamp(0, 1)
    rgb = rgb.where(mask.unsqueeze(-1), torch.full_like(rgb, cfg.background))
    albedo8 = albedo8.where(mask.unsqueeze(-1), torch.zeros_like(albedo8))
    return {
        "rgb": torch.round(rgb * 255).to(torch.uint8).numpy(),
        "albedo": albedo8.to(torch.uint8).numpy(),
        "depth": frags.depth.where(mask, torch.full_like(frags.depth, BACKGROUND_DEPTH)).float().numpy(),
        "normal": normal.to(torch.float16).numpy(),
        "mask": mask.numpy(),
        "view": prm.view.astype(np.float32),
        "light": prm.light.astype(np.float32),
    }


def render_images(cfg: SynthConfig, seed: int, indices: np.ndarray, mesh: BaseMesh | None = None
                  ) -> dict[str, np.ndarray]:
    """Images `indices` of run `seed` with all their ground truth (see `render`)."""
    mesh = mesh if mesh is not None else load_base_mesh()
    return render(cfg, mesh, sample_params(cfg, mesh, seed, np.asarray(indices)))
