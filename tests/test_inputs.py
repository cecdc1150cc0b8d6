"""Reading images, masks and latents; the resize/crop chains."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from engine.errors import EngineError
from engine.inputs import gan_to_model, image_to_model, load_latent, read_image, read_mask, resize_official


def _rgb(h=20, w=30, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _as_unit(t: torch.Tensor) -> np.ndarray:
    return ((t[0] + 1) / 2).permute(1, 2, 0).numpy()


def test_reads_8_bit_formats(tmp_path):
    rgb = _rgb()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.rgb.shape == (1, 3, 20, 30) and img.alpha is None and img.bits == 8
    assert np.allclose(_as_unit(img.rgb), rgb / 255, atol=1e-6)
    smooth = np.dstack([np.tile(np.linspace(0, 255, 30, dtype=np.uint8), (20, 1))] * 3)
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=95)
    assert np.abs(_as_unit(read_image(tmp_path / "a.jpg").rgb) - smooth / 255).max() < 0.05
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    gray = read_image(tmp_path / "g.png").rgb
    assert gray.shape == (1, 3, 20, 30) and torch.equal(gray[:, 0], gray[:, 2])
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(tmp_path / "rgba.png")
    rgba = read_image(tmp_path / "rgba.png")
    assert np.allclose(rgba.alpha[0, 0].numpy(), rgb[..., 0] / 255, atol=1e-6)
    Image.fromarray(np.dstack([rgb[..., 0], rgb[..., 1]]), "LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").alpha is not None
    pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert read_image(tmp_path / "p.png").alpha is not None


def test_reads_16_bit_at_full_precision(tmp_path):
    deep = np.random.default_rng(1).integers(0, 65536, (12, 16, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), deep)  # OpenCV writes BGR
    img = read_image(tmp_path / "c16.png")
    assert img.bits == 16
    assert np.abs(_as_unit(img.rgb) - deep[..., ::-1] / 65535).max() < 1e-6
    cv2.imwrite(str(tmp_path / "g16.png"), deep[..., 0])
    gray = read_image(tmp_path / "g16.png")
    assert gray.bits == 16 and np.abs(_as_unit(gray.rgb)[..., 1] - deep[..., 0] / 65535).max() < 1e-6
    bgra = np.dstack([deep, deep[..., :1]])
    cv2.imwrite(str(tmp_path / "c16a.png"), bgra)
    assert np.abs(read_image(tmp_path / "c16a.png").alpha[0, 0].numpy() - deep[..., 0] / 65535).max() < 1e-6


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(_rgb(20, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    loaded = read_image(tmp_path / "rot.jpg")
    assert loaded.rgb.shape == (1, 3, 30, 20) and loaded.original_size == (30, 20)


def test_bad_files_name_the_file(tmp_path):
    cases = {"missing.png": None, "empty.png": b"", "text.png": b"hello, not an image",
             "truncated.png": None}
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    cases["truncated.png"] = data[: len(data) // 2]
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(EngineError) as err:
            read_image(tmp_path / name)
        assert name in str(err.value)
    with pytest.raises(EngineError, match="empty"):
        read_image(tmp_path / "empty.png")


def test_huge_image_is_downscaled_with_a_warning(tmp_path):
    Image.fromarray(_rgb(100, 300)).save(tmp_path / "wide.png")
    messages = []
    img = read_image(tmp_path / "wide.png", max_side=150, warn=messages.append)
    assert img.rgb.shape == (1, 3, 50, 150) and img.downscaled and img.original_size == (100, 300)
    assert "downscaled" in messages[0] and "wide.png" in messages[0]
    assert not read_image(tmp_path / "wide.png").downscaled


def test_read_mask_prefers_alpha_then_gray(tmp_path):
    gray = np.zeros((10, 10), np.uint8)
    gray[2:5] = 255
    Image.fromarray(gray).save(tmp_path / "m.png")
    assert torch.equal(read_mask(tmp_path / "m.png")[0, 0], torch.from_numpy(gray / 255).float())
    Image.fromarray(np.dstack([np.full((10, 10, 3), 255, np.uint8), gray])).save(tmp_path / "ma.png")
    assert torch.equal(read_mask(tmp_path / "ma.png")[0, 0], torch.from_numpy(gray / 255).float())


def test_image_chain_crops_square_then_fraction_then_resizes():
    x = torch.zeros(1, 3, 60, 100)
    x[..., :, 20:80] = 1.0  # the central 60×60 square is white, the side bands black
    out = image_to_model(x, 32)
    assert out.shape == (1, 3, 32, 32) and torch.allclose(out, torch.ones_like(out))
    y = torch.zeros(1, 1, 64, 64)
    y[..., 16:48, 16:48] = 1.0
    assert torch.allclose(image_to_model(y, 16, crop_fraction=0.5, mode="area"), torch.ones(1, 1, 16, 16))
    ramp = torch.linspace(-1, 1, 128).expand(1, 3, 128, 128)
    small = image_to_model(ramp, 64)
    assert small.min() >= -1 and small.max() <= 1 and small.shape[-1] == 64


def test_official_resize_and_gan_chain():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(resize_official(x, 2), F.avg_pool2d(x, 2))  # area when shrinking
    assert torch.allclose(resize_official(x, 8), F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False))
    gan = torch.full((1, 3, 32, 32), 3.0)
    gan[..., 4:28, 4:28] = -0.5  # resized to 64: rows/cols 8..55, the central 32 (16..47) lies inside
    out = gan_to_model(gan, 8, crop=32, reference=64)
    assert torch.allclose(out, torch.full_like(out, -0.5))
    assert gan_to_model(gan, 8).max() == 1.0  # clamped to [-1, 1] before resizing


def test_latent_layouts(tmp_path):
    w = torch.randn(512)
    for name, obj in {"flat.pt": w, "row.pt": w[None], "dict.pt": {"latent": w[None], "img": torch.zeros(3)}}.items():
        torch.save(obj, tmp_path / name)
        got = load_latent(tmp_path / name)
        assert got.shape == (1, 512) and torch.equal(got[0], w)
    bad = {"wplus.pt": (torch.randn(1, 14, 512), "W\\+ code with 14 rows"),
           "wplus2.pt": (torch.randn(14, 512), "W\\+"),
           "shape.pt": (torch.randn(3, 5), r"expected \(512,\)"),
           "nodict.pt": ({"w": w}, "'latent'"),
           "list.pt": ([1, 2], "expected a tensor"),
           "nan.pt": (torch.full((512,), float("nan")), "NaN")}
    for name, (obj, message) in bad.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(EngineError, match=message):
            load_latent(tmp_path / name)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(EngineError, match=r"junk\.pt"):
        load_latent(tmp_path / "junk.pt")
    with pytest.raises(EngineError, match="does not exist"):
        load_latent(tmp_path / "nope.pt")
    torch.save(torch.randn(64), tmp_path / "small.pt")
    assert load_latent(tmp_path / "small.pt", latent_dim=64).shape == (1, 64)
