"""Reading the user's inputs: image, optional mask, optional latent; the resize/crop chains (§5.4, §13.2).

Public API:

    InputImage(rgb 1×3×H×W in [−1, 1], alpha 1×1×H×W in [0, 1] or None, path, original_size (H, W),
               bits, downscaled)
    read_image(path, max_side=4096, warn=None) -> InputImage
        PNG/JPEG/anything Pillow reads; 8- or 16-bit; gray, gray+alpha, palette, RGB, RGBA; EXIF
        orientation applied. Unreadable / empty / zero-size → EngineError naming the file. Larger than
        `max_side` → downscaled on load and `warn(message)` (or warnings.warn) is called.
    read_mask(path, max_side=4096, warn=None) -> 1×1×H×W in [0, 1]
        the alpha channel if it is informative, else the gray level (white = object).
    image_to_model(x, size, crop_fraction=None) -> B×C×size×size
        centre square crop → optional centre crop to `crop_fraction` of the side → antialiased bilinear
        resize (the torchvision-PIL Resize of the official input path). Masks: same chain, pass mode="area".
    gan_to_model(img, size, crop=None, reference=None) -> B×3×size×size
        the official GAN-image chain: clamp to [−1, 1]; if crop: resize to `reference` (the data images'
        side), centre-crop `crop` pixels at offset (reference − crop)//2; resize to size. Resizes use
        the official utils.resize: bilinear (align_corners=False) when enlarging, area when shrinking.
    resize_official(x, size) -> B×C×size×size
    load_latent(path, latent_dim=512, n_latent=None) -> 1×latent_dim
        .pt tensor of latent_dim or 1×latent_dim, or a dict with 'latent' (other keys ignored). W+ codes
        (n×latent_dim, n > 1) are rejected: GAN2Shape works in W space (§8).

Non-square inputs are centre-cropped to a square (the official data are square); the crop fraction
of a preset (Config.crop / crop_reference_size) is applied to the input and the GAN image alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import EngineError
from .io import load_torch

Warn = Callable[[str], None]


@dataclass
class InputImage:
    rgb: torch.Tensor  # 1×3×H×W in [−1, 1]
    alpha: torch.Tensor | None  # 1×1×H×W in [0, 1]
    path: str
    original_size: tuple[int, int]  # (H, W) as stored in the file (after EXIF rotation)
    bits: int  # 8 or 16
    downscaled: bool


def _warn(warn: Warn | None, message: str) -> None:
    warn(message) if warn is not None else warnings.warn(message, stacklevel=3)


def _open(path: str | Path, max_side: int, warn: Warn | None) -> tuple[Image.Image, tuple[int, int], bool, str]:
    path = Path(path)
    if not path.is_file():
        raise EngineError("image file does not exist", path)
    if path.stat().st_size == 0:
        raise EngineError("image file is empty (0 bytes)", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.width == 0 or img.height == 0:
                raise EngineError("image has zero size", path)
            if max(img.size) > max_side:
                img.draft(img.mode, (max_side, max_side))  # JPEG: decode at a reduced scale
            img.load()
            fmt = img.format or ""
            img = ImageOps.exif_transpose(img)
    except Image.DecompressionBombError as exc:
        raise EngineError(f"image is too large to decode safely ({exc})", path) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise EngineError(f"cannot read image ({type(exc).__name__}: {exc})", path) from exc
    original = (img.height, img.width)
    downscaled = False
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        if img.mode not in ("RGB", "RGBA", "L", "LA", "I", "I;16", "F"):
            img = img.convert("RGBA")
        if img.mode in ("I;16", "I"):
            img = img.convert("I")
        img = img.resize(new, Image.BILINEAR, reducing_gap=2.0)
        downscaled = True
        _warn(warn, f"{path}: image is {original[1]}×{original[0]}, larger than {max_side} px; "
                    f"downscaled to {new[0]}×{new[1]}")
    return img, original, downscaled, fmt


def _to_float(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Pillow image → (H×W×3 float in [0,1], H×W alpha or None, bit depth)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = np.asarray(img, dtype=np.float64)
        maxval = 65535.0 if img.mode.startswith("I;16") or gray.max() > 255 else 255.0
        gray = np.clip(gray / maxval, 0, 1)
        return np.repeat(gray[..., None], 3, axis=2), None, 16 if maxval > 255 else 8
    if img.mode == "F":
        gray = np.clip(np.asarray(img, dtype=np.float64), 0, 1)
        return np.repeat(gray[..., None], 3, axis=2), None, 16
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    rgba = np.asarray(img.convert("RGBA" if has_alpha else "RGB"), dtype=np.float64) / 255.0
    return rgba[..., :3], (rgba[..., 3] if has_alpha else None), 8


def _png16(path: str | Path, img: Image.Image, fmt: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Full-precision colour of a 16-bit RGB(A) PNG (Pillow reduces those to 8 bits), else None."""
    import cv2

    if fmt != "PNG" or img.mode not in ("RGB", "RGBA"):
        return None
    with open(path, "rb") as fh:  # IHDR bit depth (byte 24): decode a second time only for 16-bit files
        if fh.read(25)[24:25] != b"\x10":
            return None
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[:2] != (img.height, img.width):
        return None
    arr = arr.astype(np.float64) / 65535.0
    return np.ascontiguousarray(arr[..., 2::-1]), (arr[..., 3] if arr.shape[2] == 4 else None)


def read_image(path: str | Path, max_side: int = 4096, warn: Warn | None = None) -> InputImage:
    """Read any still image Pillow supports into [−1, 1] RGB plus optional alpha (see module doc)."""
    img, original, downscaled, fmt = _open(path, max_side, warn)
    rgb, alpha, bits = _to_float(img)
    deep = None if downscaled else _png16(path, img, fmt)
    if deep is not None:
        (rgb, alpha), bits = deep, 16
    rgb_t = torch.from_numpy(rgb).float().permute(2, 0, 1)[None] * 2 - 1
    alpha_t = None if alpha is None else torch.from_numpy(alpha).float()[None, None]
    return InputImage(rgb_t, alpha_t, str(path), original, bits, downscaled)


def read_mask(path: str | Path, max_side: int = 4096, warn: Warn | None = None) -> torch.Tensor:
    """A mask file → 1×1×H×W in [0, 1]: its alpha if not fully opaque, else its gray level."""
    img = read_image(path, max_side, warn)
    if img.alpha is not None and img.alpha.min() < 1:
        return img.alpha
    return ((img.rgb + 1) / 2).mean(dim=1, keepdim=True)


# ----------------------------------------------------------------------------------------------
# Geometry chains


def center_square(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top:top + s, left:left + s]


def center_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """Official centre crop of a square image: `crop` pixels at offset (side − crop)//2."""
    side = x.shape[-1]
    off = (side - crop) // 2
    return x[..., off:off + crop, off:off + crop]


def resize_official(x: torch.Tensor, size: int) -> torch.Tensor:
    """GAN2Shape's utils.resize: bilinear (align_corners=False) when enlarging, area when shrinking."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if x.shape[-1] < size:
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return F.interpolate(x, size=(size, size), mode="area")


def image_to_model(x: torch.Tensor, size: int, crop_fraction: float | None = None,
                   mode: str = "antialias") -> torch.Tensor:
    """Input image (or mask, mode='area') → size×size through square crop, optional crop, resize."""
    x = center_square(x)
    if crop_fraction is not None:
        x = center_crop(x, max(1, round(crop_fraction * x.shape[-1])))
    if x.shape[-1] == size:
        return x
    if mode == "area":
        return resize_official(x, size)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def gan_to_model(img: torch.Tensor, size: int, crop: int | None = None, reference: int | None = None) -> torch.Tensor:
    """Generator output → the S×S image the 3D nets see (official chain, §5.4)."""
    img = img.clamp(-1, 1)
    if crop is not None:
        img = center_crop(resize_official(img, reference or img.shape[-1]), crop)
    return resize_official(img, size)


# ----------------------------------------------------------------------------------------------
# Latents


def load_latent(path: str | Path, latent_dim: int = 512, n_latent: int | None = None) -> torch.Tensor:
    """A W-space latent file → 1×latent_dim float tensor (see module doc for accepted layouts)."""
    path = Path(path)
    if not path.is_file():
        raise EngineError("latent file does not exist", path)
    data = load_torch(path)
    if isinstance(data, Mapping):
        if "latent" not in data:
            raise EngineError(f"dict without a 'latent' entry (keys: {', '.join(map(str, data))})", path)
        data = data["latent"]
    if not isinstance(data, torch.Tensor):
        raise EngineError(f"expected a tensor, got {type(data).__name__}", path)
    shape = tuple(data.shape)
    if data.numel() == latent_dim and (data.dim() == 1 or (data.dim() == 2 and shape[0] == 1)):
        latent = data.reshape(1, latent_dim).float()
        if not torch.isfinite(latent).all():
            raise EngineError("latent contains NaN or infinite values", path)
        return latent
    if data.dim() in (2, 3) and shape[-1] == latent_dim and data.numel() > latent_dim:
        rows = shape[-2]
        hint = f" (this generator has {n_latent} style inputs)" if n_latent else ""
        raise EngineError(f"latent has shape {shape}: a W+ code with {rows} rows{hint}. GAN2Shape needs one "
                          f"W-space vector of {latent_dim} (spec §8): invert in W mode, or omit --latent to "
                          "use the built-in W-space projector", path)
    raise EngineError(f"latent has shape {shape}, expected ({latent_dim},) or (1, {latent_dim})", path)
