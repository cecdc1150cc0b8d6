"""Losses: exact denominators and zero cases, feature-loss pooling, and the perceptual backbone choice."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr
from skimage import data as skdata
from skimage.filters import gaussian
from skimage.metrics import structural_similarity

from engine import losses
from engine.errors import EngineError
from engine.losses import (
    build_perceptual,
    dfeat_loss,
    find_mobilenet_weights,
    latent_regulariser,
    photometric_l1,
    smooth_loss,
)


def test_photometric_l1_denominator_counts_channels():
    x = torch.zeros(1, 3, 4, 4)
    y = torch.zeros(1, 3, 4, 4)
    y[0, 0, 0, 0] = 6.0  # one channel of one masked pixel differs
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 0, :2] = 1  # two masked pixels → 6 masked values
    assert photometric_l1(x, y, mask).item() == pytest.approx(6.0 / 6)
    assert photometric_l1(x, y, mask[:, 0]).item() == pytest.approx(1.0)  # B×H×W mask too
    assert photometric_l1(x, y).item() == pytest.approx(6.0 / 48)  # no mask: plain mean
    # an unmasked difference does not count at all
    y[0, 1, 3, 3] = 100.0
    assert photometric_l1(x, y, mask).item() == pytest.approx(1.0)


def test_smoothness_is_zero_on_linear_ramps_and_positive_on_curvature():
    i, j = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    ramp = (0.3 * i - 0.7 * j + 2).expand(2, 8, 8)
    assert smooth_loss(ramp).item() == pytest.approx(0.0, abs=1e-6)
    assert smooth_loss(ramp.unsqueeze(1)).item() == pytest.approx(0.0, abs=1e-6)
    bowl = (i - 3.5) ** 2 * 0.1
    # only dyy is non-zero: 2 · 0.1 everywhere
    assert smooth_loss(bowl[None]).item() == pytest.approx(0.2, rel=1e-5)


def test_latent_regulariser_is_mean_square():
    dw = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    assert latent_regulariser(dw).item() == pytest.approx(14 / 4)


def test_dfeat_loss_pools_mask_to_each_feature_map():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1  # top half
    fa = [torch.zeros(1, 2, 4, 4), torch.zeros(1, 5, 2, 2)]
    fb = [torch.zeros(1, 2, 4, 4), torch.zeros(1, 5, 2, 2)]
    fb[0][..., 3, :] = 1.0  # bottom row of the 4×4 map: outside the pooled mask
    fb[1][..., 0, 0] = 2.0  # top-left of the 2×2 map: inside
    got = dfeat_loss(fa, fb, mask).item()
    # map 0: nothing inside the mask differs; map 1: mask (1,1;0,0) → 5 channels·2 masked px, one px differs
    assert got == pytest.approx(0 + (2.0 * 5) / (5 * 2))
    assert dfeat_loss(fa, fb).item() == pytest.approx(4 * 2 / 32 + 2.0 * 5 / 20)


def test_perceptual_auto_falls_back_loudly_and_names_backbone(monkeypatch):
    monkeypatch.setattr(losses, "find_vgg16_weights", lambda: None)
    messages = []
    loss = build_perceptual("auto", warn=messages.append)
    assert loss.backbone == "mobilenet-v2"
    assert loss.weights_file.endswith(losses.MOBILENET_FILE)
    assert messages and "MobileNetV2" in messages[0]
    with pytest.raises(EngineError, match="vgg16"):
        build_perceptual("lpips-vgg")
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    d = loss(x, x.flip(0))
    assert d.shape == (2,) and (d > 0).all()
    assert loss(x, x).abs().max().item() < 1e-6
    loss.train()
    assert not loss.training  # frozen backbone stays in eval mode (BatchNorm statistics fixed)


def test_lpips_vgg_loads_a_local_trunk_file(tmp_path, monkeypatch):
    import torchvision

    vgg_file = tmp_path / losses.VGG16_FILE
    state = torchvision.models.vgg16().state_dict()
    torch.save(state, vgg_file)
    monkeypatch.setattr(losses, "find_vgg16_weights", lambda: vgg_file)
    messages = []
    loss = build_perceptual("auto", warn=messages.append)
    assert loss.backbone == "lpips-vgg" and not messages
    assert torch.equal(loss.lpips.net.slice3[5].weight, state["features.14.weight"])
    assert loss.lpips.lin0.model[1].weight.device.type == "cpu"  # heads mapped to the CPU
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x.flip(0)).shape == (2,)


# ------------------------------------------------------------------------------------------------
# The measurement behind the offline backbone choice (numbers recorded in engine/losses.py).

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
LEVELS = 5


def _photo(name: str, size: int = 64) -> np.ndarray:
    img = np.asarray(getattr(skdata, name)(), dtype=np.float32) / 255.0
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.asarray(Image.fromarray((img * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
                      dtype=np.float32) / 255.0


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray((img * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf), dtype=np.float32) / 255.0


def _distortions(img: np.ndarray) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(img.shape).astype(np.float32)
    return {
        "blur": [gaussian(img, sigma=s, channel_axis=2) for s in (0.5, 0.8, 1.2, 1.8, 2.5)],
        "noise": [np.clip(img + s * noise, 0, 1) for s in (0.02, 0.05, 0.08, 0.12, 0.18)],
        "jpeg": [_jpeg(img, q) for q in (80, 50, 30, 15, 5)],
        "contrast": [(img - img.mean()) * c + img.mean() for c in (0.9, 0.75, 0.6, 0.45, 0.3)],
    }


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() * 2 - 1


def ranking_scores(distance) -> tuple[float, float, float]:
    """Mean over photos of: severity-order Spearman ρ within each distortion type; Spearman ρ of all 20
    versions against 1 − SSIM; and d(1-px shift) / d(±noise of the same pixel L1) (shift tolerance)."""
    severity, agreement, shift_ratio = [], [], []
    for name in PHOTOS:
        ref = _photo(name)
        d_all, ssim_all = [], []
        for versions in _distortions(ref).values():
            d = [float(distance(_to_tensor(ref), _to_tensor(v))) for v in versions]
            severity.append(spearmanr(range(LEVELS), d).statistic)
            d_all += d
            ssim_all += [1 - structural_similarity(ref, v, channel_axis=2, data_range=1.0) for v in versions]
        agreement.append(spearmanr(d_all, ssim_all).statistic)
        big = _photo(name, 66)
        base, shifted = big[1:65, 1:65], big[1:65, 2:66]
        l1 = np.abs(base - shifted).mean()
        signs = np.random.default_rng(0).choice([-1.0, 1.0], base.shape).astype(np.float32)
        noisy = np.clip(base + signs * l1, 0, 1)
        shift_ratio.append(float(distance(_to_tensor(base), _to_tensor(shifted)))
                           / float(distance(_to_tensor(base), _to_tensor(noisy))))
    return float(np.mean(severity)), float(np.mean(agreement)), float(np.max(shift_ratio))


def candidate_distances() -> dict:
    import lpips

    torch.manual_seed(0)
    random_vgg = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()
    mobilenet = losses.MobileNetPerceptual(find_mobilenet_weights())
    with torch.no_grad():
        return {
            "mobilenet-v2": lambda a, b: mobilenet(a, b).item(),
            "vgg-random": lambda a, b: random_vgg(a, b).item(),
            "pixel-l1": lambda a, b: (a - b).abs().mean().item(),
        }


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_offline_perceptual_ranking():
    scores = {name: ranking_scores(fn) for name, fn in candidate_distances().items()}
    severity, _, shift = scores["mobilenet-v2"]
    assert severity > 0.95  # orders every distortion series correctly (almost always)
    assert shift < 1.0  # on every photo a 1-px shift is closer than equally strong noise
    assert scores["vgg-random"][2] > 1.0  # LPIPS without its ImageNet trunk fails that
    assert scores["pixel-l1"][2] > 0.95  # and pixel L1 cannot tell them apart


if __name__ == "__main__":  # prints the table recorded in engine/losses.py
    for name, fn in candidate_distances().items():
        print(name, *(f"{v:.2f}" for v in ranking_scores(fn)))
