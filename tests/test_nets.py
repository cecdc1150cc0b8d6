"""The 3D networks against spec §2 (names, shapes, sizes), parameterisations, checkpoints, Δw."""

import math

import pytest
import torch
from torch import nn

from engine import weights
from engine.errors import EngineError
from engine.gan import Generator, StyleGAN2Arch, StyleGAN2Generator, ZSpaceGenerator
from engine.nets import (
    MappingOffset,
    ResBlockDown,
    build_nets,
    clamp_border,
    depth_from_raw,
    describe_checkpoint,
    light_params,
    load_gan2shape_checkpoint,
    load_mvn,
    resolve_mvn,
    save_gan2shape_checkpoint,
    view_to_transform,
)


def _layers(net: nn.Module) -> dict[int, nn.Module]:
    return dict(enumerate(net.network))


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_depth_net_128_matches_spec_table():
    d = build_nets(128)["netD"]
    layers = _layers(d)
    # (index, class, in, out, kernel, stride) of every conv / conv-transpose in the §2.1 table
    table = [(0, nn.Conv2d, 3, 32, 4, 2), (3, nn.Conv2d, 32, 64, 4, 2), (6, nn.Conv2d, 64, 128, 4, 2),
             (9, nn.Conv2d, 128, 256, 4, 2), (12, nn.Conv2d, 256, 512, 4, 2), (14, nn.Conv2d, 512, 256, 4, 1),
             (16, nn.ConvTranspose2d, 256, 512, 4, 1), (18, nn.Conv2d, 512, 512, 3, 1),
             (20, nn.ConvTranspose2d, 512, 256, 4, 2), (23, nn.Conv2d, 256, 256, 3, 1),
             (26, nn.ConvTranspose2d, 256, 128, 4, 2), (29, nn.Conv2d, 128, 128, 3, 1),
             (32, nn.ConvTranspose2d, 128, 64, 4, 2), (35, nn.Conv2d, 64, 64, 3, 1),
             (38, nn.ConvTranspose2d, 64, 32, 4, 2), (41, nn.Conv2d, 32, 32, 3, 1), (45, nn.Conv2d, 32, 32, 3, 1),
             (48, nn.Conv2d, 32, 32, 5, 1), (51, nn.Conv2d, 32, 1, 5, 1)]
    for idx, cls, cin, cout, k, s in table:
        layer = layers[idx]
        assert type(layer) is cls, idx
        assert (layer.in_channels, layer.out_channels, layer.kernel_size[0], layer.stride[0]) == (cin, cout, k, s)
        assert layer.bias is None
    gn = {i: (m.num_groups, m.num_channels) for i, m in layers.items() if isinstance(m, nn.GroupNorm)}
    assert gn == {1: (8, 32), 4: (16, 64), 7: (32, 128), 10: (64, 256), 21: (64, 256), 24: (64, 256),
                  27: (32, 128), 30: (32, 128), 33: (16, 64), 36: (16, 64), 39: (8, 32), 42: (8, 32),
                  46: (8, 32), 49: (8, 32)}
    assert isinstance(layers[44], nn.Upsample) and isinstance(layers[13], nn.LeakyReLU)
    assert len(layers) == 52 and isinstance(_layers(build_nets(128)["netA"])[52], nn.Tanh)
    assert _count(d) / 1e6 == pytest.approx(12.95, abs=0.01)
    assert d(torch.zeros(1, 3, 128, 128)).shape == (1, 1, 128, 128)


def test_depth_net_64_indices_match_spec():
    layers = _layers(build_nets(64)["netD"])
    by_type = {cls: sorted(i for i, m in layers.items() if type(m) is cls)
               for cls in (nn.Conv2d, nn.GroupNorm, nn.ConvTranspose2d)}
    assert by_type[nn.Conv2d] == [0, 3, 6, 9, 11, 15, 20, 26, 32, 36, 39, 42]
    assert by_type[nn.GroupNorm] == [1, 4, 7, 18, 21, 24, 27, 30, 33, 37, 40]
    assert by_type[nn.ConvTranspose2d] == [13, 17, 23, 29]
    assert [layers[i].out_channels for i in (0, 3, 6, 9, 11)] == [64, 128, 256, 512, 256]


@pytest.mark.parametrize("size, conv_idx, final, count", [
    (128, [0, 2, 4, 6, 8, 10, 12], 512, 6.98), (64, [0, 2, 4, 6, 8, 10], 512, 6.95)])
def test_view_and_light_nets(size, conv_idx, final, count):
    nets = build_nets(size)
    for name, cout in (("netV", 6), ("netL", 4)):
        layers = _layers(nets[name])
        assert sorted(i for i, m in layers.items() if isinstance(m, nn.Conv2d)) == conv_idx
        assert layers[conv_idx[-1]].in_channels == final and layers[conv_idx[-1]].out_channels == cout
        assert isinstance(layers[len(layers) - 1], nn.Tanh)
        assert nets[name](torch.zeros(2, 3, size, size)).shape == (2, cout)
    assert _count(nets["netV"]) / 1e6 == pytest.approx(count, abs=0.01)


def test_latent_encoder_layout():
    e128 = build_nets(128)["netEnc"]
    keys = set(e128.state_dict())
    for i in range(1, 5):
        assert {f"network.{i}.conv1.weight", f"network.{i}.conv2.weight", f"network.{i}.conv_sc.weight",
                f"network.{i}.conv_sc.bias"} <= keys
    assert e128.state_dict()["network.6.weight"].shape == (1024, 512, 4, 4)
    assert e128.state_dict()["network.8.weight"].shape == (512, 1024, 1, 1)
    assert _count(e128) / 1e6 == pytest.approx(13.8, abs=0.02)
    e64 = build_nets(64)["netEnc"].state_dict()
    assert e64["network.5.weight"].shape == (512, 256, 4, 4) and e64["network.7.weight"].shape == (512, 512, 1, 1)
    assert "network.4.conv1.weight" not in e64


@pytest.mark.parametrize("width", [0.3, 0.5])
def test_slim_networks_run_and_reload(width, tmp_path):
    nets = build_nets(64, width)
    assert _count(nets["netD"]) < 0.35 * 12.98e6
    shapes = [tuple(net(torch.zeros(1, 3, 64, 64)).shape) for net in nets.values()]
    assert shapes == [(1, 1, 64, 64), (1, 3, 64, 64), (1, 6), (1, 4), (1, 512)]
    save_gan2shape_checkpoint(tmp_path / "slim.pth", nets)
    assert describe_checkpoint(tmp_path / "slim.pth").startswith("gan2shape, 64²")


def test_resblock_shortcut_sees_relu_of_input():
    block = ResBlockDown(2, 3)
    with torch.no_grad():
        block.conv1.weight.zero_()  # residual branch gives 0: the output is the shortcut alone
    x = torch.randn(1, 2, 4, 4)
    expected = block.conv_sc(nn.functional.avg_pool2d(torch.relu(x), 2))
    assert torch.allclose(block(x), expected)
    assert not torch.allclose(block(x), block.conv_sc(nn.functional.avg_pool2d(x, 2)))


def test_depth_parameterisation_and_border_quirk():
    raw = torch.randn(2, 1, 8, 8)
    depth = depth_from_raw(raw)
    assert depth.shape == (2, 8, 8) and depth.min() >= 0.9 and depth.max() <= 1.1 and depth.std() > 0.01
    assert torch.allclose(depth_from_raw(raw + 5), depth, atol=1e-6)  # spatial mean removed before tanh
    assert torch.allclose(depth_from_raw(torch.zeros(1, 8, 8)), torch.ones(1, 8, 8))
    clamped = clamp_border(depth)
    border = 1.02 * 1.04 - 0.02 * depth[..., [0, 1, 6, 7]]
    assert torch.allclose(clamped[..., [0, 1, 6, 7]], border)
    assert torch.equal(clamped[..., 2:6], depth[..., 2:6])  # rows are not clamped, inner columns untouched
    assert torch.allclose(clamp_border(depth, factor=1.0)[..., [0, 7]], torch.full((2, 8, 2), 1.04))


def test_view_and_light_parameterisation():
    v = view_to_transform(torch.ones(1, 6))
    assert torch.allclose(v, torch.tensor([[math.pi / 3] * 3 + [0.1, 0.1, 0.0]]))
    k_a, k_d, d = light_params(torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.2, -0.4, 1.0, -1.0]]))
    assert torch.allclose(k_a, torch.tensor([0.5, 0.6])) and torch.allclose(k_d, torch.tensor([0.5, 0.3]))
    assert torch.allclose(d[0], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(d[1], torch.tensor([1.0, -1.0, 1.0]) / math.sqrt(3))


def test_checkpoint_round_trip_and_strict_checks(tmp_path):
    nets = build_nets(64, width=0.25)
    path = tmp_path / "ck.pth"
    save_gan2shape_checkpoint(path, nets, extra={"iteration": 3})
    fresh = build_nets(64, width=0.25)
    assert load_gan2shape_checkpoint(path, fresh) == ["netD", "netA", "netV", "netL", "netEnc"]
    assert torch.equal(fresh["netD"].state_dict()["network.0.weight"], nets["netD"].state_dict()["network.0.weight"])
    assert describe_checkpoint(path) == "gan2shape, 64², netD/netA/netV/netL/netEnc, width 0.25"
    with pytest.raises(EngineError, match="does not match"):
        load_gan2shape_checkpoint(path, build_nets(128, width=0.25))
    partial = {"netD": nets["netD"].state_dict()}
    torch.save(partial, tmp_path / "d_only.pth")
    assert load_gan2shape_checkpoint(tmp_path / "d_only.pth", fresh) == ["netD"]
    for size, width in ((64, 0.5), (128, 0.25)):  # V and L only (engine train-views): sized from netV
        views = build_nets(size, width)
        save_gan2shape_checkpoint(tmp_path / "vl.pth", {k: views[k] for k in ("netV", "netL")})
        assert describe_checkpoint(tmp_path / "vl.pth") == f"gan2shape, {size}², netV/netL, width {width:g}"
    # D at width 0.5 beside V and L at 0.25, as the default preset's pretrain.pth (`view_light_width`)
    narrow = build_nets(64, width=0.25)
    mixed = {"netD": build_nets(64, width=0.5)["netD"], "netV": narrow["netV"], "netL": narrow["netL"]}
    save_gan2shape_checkpoint(tmp_path / "mixed.pth", mixed)
    assert describe_checkpoint(tmp_path / "mixed.pth") == "gan2shape, 64², netD/netV/netL, width 0.5 (V and L 0.25)"
    save_gan2shape_checkpoint(tmp_path / "sizes.pth", {"netD": mixed["netD"], "netV": views["netV"]})  # V at 128²
    with pytest.raises(EngineError, match="different image sizes"):
        describe_checkpoint(tmp_path / "sizes.pth")
    broken = {"netD": {k: v for k, v in partial["netD"].items() if not k.startswith("network.0.")}}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(EngineError, match="missing"):
        load_gan2shape_checkpoint(tmp_path / "broken.pth", fresh)
    torch.save({"something": 1}, tmp_path / "other.pth")
    with pytest.raises(EngineError, match="no network entries"):
        load_gan2shape_checkpoint(tmp_path / "other.pth", fresh)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(EngineError, match="weights-only"):
        describe_checkpoint(tmp_path / "junk.pth")


@pytest.mark.parametrize("size", [64, 128])
def test_depth_skips_start_as_the_plain_net_and_load_both_ways(size, tmp_path):
    torch.manual_seed(0)
    plain, skip = build_nets(size, width=0.25)["netD"], build_nets(size, width=0.25, depth_skips=True)["netD"]
    assert len(skip.skips) == 5 - (size == 64) and _count(skip) > _count(plain)
    save_gan2shape_checkpoint(tmp_path / "plain.pth", {"netD": plain})
    for conv in skip.skips:  # trained skips are zeroed again when a plain file is loaded
        nn.init.normal_(conv.weight)
    x = torch.randn(2, 3, size, size)
    assert not torch.allclose(skip(x), plain(x), atol=1e-3)
    assert load_gan2shape_checkpoint(tmp_path / "plain.pth", {"netD": skip}) == ["netD"]
    assert torch.equal(skip(x), plain(x))
    # each skip reaches the output: one step on a loss moves every skip conv off zero
    skip(x).square().mean().backward()
    assert all(conv.weight.grad.abs().sum() > 0 for conv in skip.skips)
    for conv in skip.skips:
        nn.init.normal_(conv.weight, std=0.1)
    save_gan2shape_checkpoint(tmp_path / "skip.pth", {"netD": skip})
    assert describe_checkpoint(tmp_path / "skip.pth") == f"gan2shape, {size}², netD, width 0.25, D with skips"
    again = build_nets(size, width=0.25, depth_skips=True)["netD"]
    load_gan2shape_checkpoint(tmp_path / "skip.pth", {"netD": again})
    assert torch.equal(again(x), skip(x))
    with pytest.raises(EngineError, match="depth_skips"):
        load_gan2shape_checkpoint(tmp_path / "skip.pth", {"netD": plain})


@pytest.mark.parametrize("skips", [False, True])
def test_image_skip_starts_as_the_net_without_it_and_loads_both_ways(skips, tmp_path):
    torch.manual_seed(0)
    without = build_nets(64, width=0.25, depth_skips=skips)["netD"]
    with_image = build_nets(64, width=0.25, depth_skips=skips, depth_image_skip=True)["netD"]
    # 3×3 convs from RGB to the 16 full-resolution channels, then 16 → 16
    assert _count(with_image) - _count(without) == 3 * 16 * 9 + 16 * 16 * 9
    save_gan2shape_checkpoint(tmp_path / "without.pth", {"netD": without})
    for conv in with_image.image_skip[::2]:  # a taught image skip is silenced again by a file without one
        nn.init.normal_(conv.weight)
    x = torch.randn(2, 3, 64, 64)
    assert load_gan2shape_checkpoint(tmp_path / "without.pth", {"netD": with_image}) == ["netD"]
    assert torch.equal(with_image(x), without(x))
    with_image(x).square().mean().backward()
    assert with_image.image_skip[-1].weight.grad.abs().sum() > 0  # the first conv's random start feeds it
    for conv in with_image.image_skip[::2]:
        nn.init.normal_(conv.weight, std=0.1)
    save_gan2shape_checkpoint(tmp_path / "image.pth", {"netD": with_image})
    kinds = "skips and an image skip" if skips else "an image skip"
    assert describe_checkpoint(tmp_path / "image.pth") == f"gan2shape, 64², netD, width 0.25, D with {kinds}"
    again = build_nets(64, width=0.25, depth_skips=skips, depth_image_skip=True)["netD"]
    load_gan2shape_checkpoint(tmp_path / "image.pth", {"netD": again})
    assert torch.equal(again(x), with_image(x))
    with pytest.raises(EngineError, match="depth_image_skip"):
        load_gan2shape_checkpoint(tmp_path / "image.pth", {"netD": without})


def test_every_checkpoint_shipped_in_weights_validates_as_its_kind():
    """`engine info` must not call a shipped file invalid (the default's pretrain.pth once was: its V and L are
    narrower than its D)."""
    shipped = [(e, weights.REPO_WEIGHTS / e.file) for e in weights.manifest().values()]
    shipped = [(e, path) for e, path in shipped if path.is_file()]
    assert {e.name for e, _ in shipped} >= {"default", "default-pretrain", "default-views-lights"}
    for entry, path in shipped:
        assert weights.validate(entry, path), entry.name


def test_info_validator_is_registered(tmp_path):
    path = tmp_path / "celeba_pretrain.pth"
    save_gan2shape_checkpoint(path, build_nets(128, width=0.125))
    entry = weights.manifest()["celeba-pretrain"]
    assert weights.validate(entry, path).startswith("gan2shape, 128²")


def test_mvn_files_and_builtin_defaults(tmp_path):
    torch.save({"mean": torch.arange(6.0), "cov": torch.eye(6)}, tmp_path / "v.pth")
    mvn = load_mvn(tmp_path / "v.pth", 6)
    assert torch.equal(mvn.mean, torch.arange(6.0)) and mvn.distribution().sample((3,)).shape == (3, 6)
    with pytest.raises(EngineError, match="expected 4"):
        load_mvn(tmp_path / "v.pth", 4)
    torch.save({"mean": torch.zeros(6), "cov": torch.eye(5)}, tmp_path / "bad.pth")
    with pytest.raises(EngineError, match="'cov' has shape"):
        load_mvn(tmp_path / "bad.pth")
    assert "built-in" in resolve_mvn(None, "view").source
    assert resolve_mvn(str(tmp_path / "v.pth"), "view").source == str(tmp_path / "v.pth")
    # a manifest entry whose file is not installed falls back to the built-in default, visibly
    if weights.manifest()["celeba-light-mvn"].find() is None:
        light = resolve_mvn("celeba-light-mvn", "light")
        assert "built-in" in light.source and light.mean.shape == (4,)


def _tiny_generator(n_mlp: int = 8) -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(Generator(StyleGAN2Arch(size=8, style_dim=16, n_mlp=n_mlp, channel_max=8)))


@pytest.mark.parametrize("f1_d", range(1, 9))
def test_zero_encoder_output_gives_zero_offset(f1_d):
    g = _tiny_generator()
    offset = MappingOffset(g, f1_d)
    h = torch.zeros(5, 16)
    assert torch.equal(offset(h), torch.zeros(5, 16))
    h = torch.randn(5, 16)
    assert torch.equal(offset(h, h_ref=h), torch.zeros(5, 16))  # relative_enc with h = E(gan_im)
    assert offset(h).abs().max() > 0


def test_offset_enters_mapping_with_official_off_by_one():
    g = _tiny_generator()
    style = g.generator.style
    h = torch.randn(3, 16) * 0.1
    # F1_d = 2: the offset is added after module 5 and passes the last three linears (6, 7, 8)
    center_h = style[:6](torch.zeros(1, 16))
    expected = style[6:](h + center_h) - style(torch.zeros(1, 16))
    assert torch.allclose(MappingOffset(g, 2)(h), expected, atol=1e-6)
    # F1_d = 8: PixelNorm and all eight linears, offset around z = 0
    assert torch.allclose(MappingOffset(g, 8)(h), style(h) - style(torch.zeros(1, 16)), atol=1e-6)
    with pytest.raises(EngineError, match="F1_d = 5"):
        MappingOffset(_tiny_generator(n_mlp=4), 5)


def test_generator_without_mapping_adds_the_offset_directly():
    z_gen = ZSpaceGenerator(nn.Linear(16, 3 * 4 * 4), latent_dim=16, image_size=4)
    h = torch.randn(2, 16)
    assert torch.equal(MappingOffset(z_gen, 2)(h), h)
