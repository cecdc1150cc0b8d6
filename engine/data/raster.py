"""A small batched z-buffer rasteriser for the synthetic data, independent of engine.render.

It samples the mesh exactly at integer pixel centres (u, v) = (j, i), the back-projection grid of
spec §3.2, so a stored depth d[i, j] back-projects onto the mesh surface. Triangles are double-sided;
depth and attributes are interpolated perspective-correctly. Small triangles (the common case for a
subdivided mesh at 64²) are tested against a fixed 2×2 block of candidate pixels; larger ones in a
second pass sized to the largest bounding box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Intrinsics:
    """The engine's pinhole camera (spec §3.1): fov 10°, principal point at the image centre."""

    size: int
    fov_deg: float = 10.0

    @property
    def focal(self) -> float:
        return (self.size - 1) / 2 / math.tan(math.radians(self.fov_deg) / 2)

    @property
    def centre(self) -> float:
        return (self.size - 1) / 2

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Camera-frame points (...×3) -> pixel coordinates (u = column, v = row) (...×2)."""
        return points[..., :2] / points[..., 2:3] * self.focal + self.centre

    def back_project(self, depth: torch.Tensor) -> torch.Tensor:
        """Depth B×H×W -> camera-frame points B×H×W×3 at integer pixel centres (spec §3.2)."""
        s = self.size
        grid = torch.arange(s, dtype=depth.dtype, device=depth.device)
        x = (grid.view(1, 1, s) - self.centre) / self.focal * depth
        y = (grid.view(1, s, 1) - self.centre) / self.focal * depth
        return torch.stack([x, y, depth], dim=-1)


@dataclass
class Fragments:
    """Per-pixel rasterisation result; face = -1 where no triangle covers the pixel centre."""

    face: torch.Tensor  # B×H×W int64
    bary: torch.Tensor  # B×H×W×3, perspective-correct weights of the face's three vertices
    depth: torch.Tensor  # B×H×W camera-frame z (inf on background)

    def interpolate(self, vertex_attr: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Vertex attributes B×N×C -> per-pixel values B×H×W×C (zeros on background)."""
        b, h, w = self.face.shape
        f = self.face.clamp(min=0).view(b, -1)
        corners = faces[f]  # B×P×3 vertex ids
        c = vertex_attr.shape[-1]
        vals = torch.gather(vertex_attr, 1, corners.view(b, -1, 1).expand(-1, -1, c)).view(b, -1, 3, c)
        out = (vals * self.bary.view(b, -1, 3, 1)).sum(2).view(b, h, w, c)
        return out * (self.face >= 0).unsqueeze(-1)


def _edge_weights(uv: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Screen-space barycentrics of points p (...×2) in triangles uv (...×3×2); also the signed area."""
    a, b, c = uv[..., 0, :], uv[..., 1, :], uv[..., 2, :]

    def cross(o: torch.Tensor, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return (q[..., 0] - o[..., 0]) * (r[..., 1] - o[..., 1]) - (q[..., 1] - o[..., 1]) * (r[..., 0] - o[..., 0])

    area = cross(a, b, c)
    w = torch.stack([cross(p, b, c), cross(p, c, a), cross(p, a, b)], dim=-1)
    safe = torch.where(area.abs() > 1e-12, area, torch.ones_like(area))
    return w / safe.unsqueeze(-1), area


def _candidates(uv: torch.Tensor, zf: torch.Tensor, lo: torch.Tensor, block: tuple[int, int], size: int):
    """Test every (triangle, pixel) pair in a block×block window from each bbox corner `lo`.

    uv: M×3×2 triangle pixel coordinates, zf: M×3 vertex depths, lo: M×2 (x, y) integer corners.
    Returns (triangle row, pixel x, pixel y, depth) of the covered pairs.
    """
    by, bx = block
    oy, ox = torch.meshgrid(torch.arange(by), torch.arange(bx), indexing="ij")
    px = lo[:, 0:1] + ox.reshape(1, -1)
    py = lo[:, 1:2] + oy.reshape(1, -1)
    p = torch.stack([px, py], dim=-1).to(uv.dtype)  # M×K×2
    w, area = _edge_weights(uv.unsqueeze(1), p)
    inside = (w >= 0).all(-1) & (area.abs() > 1e-12) & (px < size) & (py < size) & (px >= 0) & (py >= 0)
    rows, k = inside.nonzero(as_tuple=True)
    wk = w[rows, k]
    depth = 1.0 / (wk / zf[rows]).sum(-1)
    return rows, px[rows, k], py[rows, k], depth


def rasterize(verts: torch.Tensor, faces: torch.Tensor, cam: Intrinsics, near: float = 0.1) -> Fragments:
    """Z-buffer the meshes verts (B×N×3, camera frame) sharing `faces` (F×3) at cam.size²."""
    b, s = verts.shape[0], cam.size
    uv_v = cam.project(verts)  # B×N×2
    tri_uv = uv_v[:, faces]  # B×F×3×2
    tri_z = verts[..., 2][:, faces]  # B×F×3
    lo = torch.ceil(tri_uv.amin(2)).long()
    hi = torch.floor(tri_uv.amax(2)).long()
    extent = hi - lo + 1
    visible = (extent > 0).all(-1) & (tri_z > near).all(-1) & (hi >= 0).all(-1) & (lo < s).all(-1)
    small = visible & (extent <= 2).all(-1)
    large = visible & ~small
    bidx, fidx, xs, ys, zs = [], [], [], [], []
    for sel in (small, large):
        bi, fi = sel.nonzero(as_tuple=True)
        if bi.numel() == 0:
            continue
        ext = extent[bi, fi]
        block = (2, 2) if sel is small else (int(ext[:, 1].max()), int(ext[:, 0].max()))
        rows, px, py, z = _candidates(tri_uv[bi, fi], tri_z[bi, fi], lo[bi, fi], block, s)
        bidx.append(bi[rows])
        fidx.append(fi[rows])
        xs.append(px)
        ys.append(py)
        zs.append(z)
    face = torch.full((b * s * s,), -1, dtype=torch.long)
    if bidx:
        bi, fi, px, py, z = (torch.cat(t) for t in (bidx, fidx, xs, ys, zs))
        keep = z > near
        bi, fi, px, py, z = bi[keep], fi[keep], px[keep], py[keep], z[keep]
        pix = (bi * s + py) * s + px
        # nearest wins; ties go to the lower face id so results never depend on candidate order
        key = (z.double() * 2**24).long() * 2**22 + fi
        best = torch.full((b * s * s,), torch.iinfo(torch.long).max, dtype=torch.long)
        best.scatter_reduce_(0, pix, key, reduce="amin")
        hit = best != torch.iinfo(torch.long).max
        face[hit] = best[hit] % 2**22
    face = face.view(b, s, s)
    # recompute the winners' weights exactly at the pixel centres
    fc = face.clamp(min=0)
    batch = torch.arange(b).view(b, 1, 1).expand_as(fc)
    grid = torch.arange(s, dtype=verts.dtype)
    p = torch.stack(torch.broadcast_tensors(grid.view(1, 1, s), grid.view(1, s, 1)), dim=-1).expand(b, s, s, 2)
    w, _ = _edge_weights(tri_uv[batch, fc], p)
    inv_z = w / tri_z[batch, fc]
    depth = 1.0 / inv_z.sum(-1)
    bary = inv_z * depth.unsqueeze(-1)
    bg = face < 0
    depth = depth.masked_fill(bg, math.inf)
    bary = bary.masked_fill(bg.unsqueeze(-1), 0.0)
    return Fragments(face=face, bary=bary, depth=depth)
