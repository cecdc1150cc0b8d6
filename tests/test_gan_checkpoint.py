"""Checkpoint loading: the official dict layout, bit-exact round trips, and one clear error per bad input."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest
import torch

from engine.errors import EngineError
from engine.gan import (
    Discriminator,
    Generator,
    StyleGAN2Arch,
    describe_checkpoint,
    load_checkpoint,
    load_generator,
    save_checkpoint,
)
from engine.weights import VALIDATORS, WeightsEntry, validate

COMPACT = StyleGAN2Arch(32, style_dim=16, n_mlp=3, channel_max=8)


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> tuple[Path, dict]:
    """A random-weight 64² cm1 checkpoint laid out like rosinality's train.py output."""
    torch.manual_seed(0)
    arch = StyleGAN2Arch(64, channel_multiplier=1)
    g_ema, d = Generator(arch).state_dict(), Discriminator(arch).state_dict()
    data = {
        "g": g_ema, "d": d, "g_ema": g_ema,
        "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "params": [0, 1]}]},
        "d_optim": {"state": {}, "param_groups": []},
        "args": argparse.Namespace(size=64, channel_multiplier=1, path="lmdb", r1=10.0),
        "ada_aug_p": 0.0,
        "latent_avg": torch.randn(512),
    }
    path = tmp_path_factory.mktemp("ckpt") / "official.pt"
    torch.save(data, path)
    return path, data


def test_official_layout_loads_with_inferred_architecture(official) -> None:
    path, data = official
    ckpt = load_checkpoint(path, size=64, channel_multiplier=1)
    assert ckpt.official
    assert ckpt.arch == StyleGAN2Arch(64, channel_multiplier=1)
    for module, ref in ((ckpt.generator, data["g_ema"]), (ckpt.discriminator, data["d"])):
        state = module.state_dict()
        assert state.keys() == ref.keys()
        assert all(torch.equal(state[k], ref[k]) for k in ref)
        assert not any(p.requires_grad for p in module.parameters()) and not module.training
    assert torch.equal(ckpt.latent_avg, data["latent_avg"].view(1, 512))
    assert "64² cm1" in describe_checkpoint(path) and "official layout" in describe_checkpoint(path)


def test_round_trip_is_bit_exact(official, tmp_path: Path) -> None:
    path, _ = official
    first = load_checkpoint(path)
    again = tmp_path / "again.pt"
    save_checkpoint(again, first.generator, first.discriminator, first.latent_avg)
    second = load_checkpoint(again)
    assert not second.official and second.arch == first.arch
    for a, b in ((first.generator, second.generator), (first.discriminator, second.discriminator)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(second.latent_avg, first.latent_avg)


def test_compact_checkpoint_records_arch_and_reproduces_images(tmp_path: Path) -> None:
    torch.manual_seed(1)
    gen = Generator(COMPACT)
    path = tmp_path / "compact.pt"
    save_checkpoint(path, gen, extra={"step": 7})
    raw = torch.load(path, weights_only=True)
    assert raw["arch"] == COMPACT.to_dict() and raw["step"] == 7 and "d" not in raw
    loaded = load_generator(path)
    assert loaded.image_size == 32 and loaded.latent_dim == 16 and not loaded.has_discriminator
    w = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(loaded.synthesize(w), gen.synthesis(w))
    assert "channel cap 8" in describe_checkpoint(path)


def test_legacy_serialization_loads(tmp_path: Path) -> None:
    """Checkpoints from torch < 1.6 (as the 2020 official files) use the non-zip format."""
    arch = StyleGAN2Arch(32, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=32)
    state = Generator(arch).state_dict()
    path = tmp_path / "legacy.pt"
    torch.save({"g_ema": state, "args": argparse.Namespace(size=32)}, path, _use_new_zipfile_serialization=False)
    ckpt = load_checkpoint(path)
    assert ckpt.official and ckpt.arch == arch
    assert all(torch.equal(ckpt.generator.state_dict()[k], v) for k, v in state.items())


def test_engine_info_validator_is_registered(official) -> None:
    path, _ = official
    entry = WeightsEntry(name="x", file=path.name, kind="stylegan2")
    assert VALIDATORS["stylegan2"][0] == "engine.gan.checkpoint:describe_checkpoint"
    assert validate(entry, path).startswith("stylegan2 64² cm1")


def test_engine_info_checks_the_manifest_size(official) -> None:
    path, _ = official
    wrong = WeightsEntry(name="x", file=path.name, kind="stylegan2", size=128, channel_multiplier=1)
    with pytest.raises(EngineError):
        validate(wrong, path)


class NotAllowed:
    def __init__(self) -> None:
        self.x = 1


def _small_state() -> dict:
    return Generator(COMPACT).state_dict()


def bad_truncated(path: Path, official_path: Path) -> None:
    blob = official_path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def bad_plain_pickle(path: Path, official_path: Path) -> None:
    path.write_bytes(pickle.dumps({"g_ema": {"a": [1, 2, 3]}}))


def bad_arbitrary_object(path: Path, official_path: Path) -> None:
    torch.save({"g_ema": _small_state(), "extra": NotAllowed()}, path)


def bad_other_architecture(path: Path, official_path: Path) -> None:
    torch.save({"g_ema": {"synthesis.b4.conv1.weight": torch.zeros(512, 512, 3, 3),
                          "mapping.fc0.weight": torch.zeros(512, 512)}}, path)


def bad_same_names_other_shapes(path: Path, official_path: Path) -> None:
    state = _small_state()
    state["input.input"] = torch.zeros(8)
    torch.save({"g_ema": state}, path)


def bad_no_g_ema(path: Path, official_path: Path) -> None:
    torch.save({"generator": _small_state()}, path)


def bad_not_a_dict(path: Path, official_path: Path) -> None:
    torch.save(torch.zeros(3), path)


def bad_missing_key(path: Path, official_path: Path) -> None:
    state = _small_state()
    del state["convs.2.conv.modulation.bias"]
    torch.save({"g_ema": state, "arch": COMPACT.to_dict()}, path)


def bad_wrong_shape(path: Path, official_path: Path) -> None:
    state = _small_state()
    state["convs.1.activate.bias"] = torch.zeros(9)
    torch.save({"g_ema": state, "arch": COMPACT.to_dict()}, path)


def bad_unexpected_key(path: Path, official_path: Path) -> None:
    state = _small_state()
    state["convs.1.extra"] = torch.zeros(2, 2)
    torch.save({"g_ema": state, "arch": COMPACT.to_dict()}, path)


def bad_arch_record(path: Path, official_path: Path) -> None:
    torch.save({"g_ema": _small_state(), "arch": {"size": 48}}, path)


def bad_discriminator(path: Path, official_path: Path) -> None:
    d = Discriminator(StyleGAN2Arch(32, style_dim=16, n_mlp=3, channel_max=16)).state_dict()
    torch.save({"g_ema": _small_state(), "d": d, "arch": COMPACT.to_dict()}, path)


BAD = [
    (bad_truncated, "not a readable torch checkpoint"),
    (bad_plain_pickle, "not a readable torch checkpoint"),
    (bad_arbitrary_object, r"refuses \(.*NotAllowed\)"),
    (bad_other_architecture, "not a rosinality StyleGAN2 generator: no 'style.1.weight'"),
    (bad_same_names_other_shapes, "not a rosinality StyleGAN2 generator: its tensor shapes do not fit"),
    (bad_no_g_ema, "expected a dict with 'g_ema', found \\['generator'\\]"),
    (bad_not_a_dict, "expected a dict with 'g_ema', found Tensor"),
    (bad_missing_key, "missing 'convs.2.conv.modulation.bias' \\(expected 8\\)"),
    (bad_wrong_shape, "'convs.1.activate.bias' is 9 in the file, expected 8"),
    (bad_unexpected_key, "unexpected 'convs.1.extra' \\(2×2\\)"),
    (bad_arch_record, "invalid 'arch' entry: size must be a power of two"),
    (bad_discriminator, "'d' does not match the discriminator 32² cm2, channel cap 8"),
]


@pytest.mark.parametrize(("make", "message"), BAD, ids=[b[0].__name__ for b in BAD])
def test_bad_inputs_give_one_clear_error(make, message: str, official, tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    make(path, official[0])
    with pytest.raises(EngineError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(EngineError, match=message):
        describe_checkpoint(path)


def test_wrong_size_or_multiplier_is_reported(official) -> None:
    path, _ = official
    with pytest.raises(EngineError, match="holds a 64² generator, expected 128²"):
        load_checkpoint(path, size=128)
    with pytest.raises(EngineError, match="channel multiplier 1, expected 2"):
        load_checkpoint(path, channel_multiplier=2)
    with pytest.raises(EngineError, match="holds a 64² generator, expected 256²"):
        describe_checkpoint(path, size=256, channel_multiplier=1)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_state_dict_with_many_problems_counts_them(tmp_path: Path) -> None:
    state = _small_state()
    for key in [k for k in state if k.startswith("convs.3.")]:
        del state[key]
    path = tmp_path / "many.pt"
    torch.save({"g_ema": state, "arch": COMPACT.to_dict()}, path)
    with pytest.raises(EngineError, match=r"missing 'convs\.3\..*' .* \(and \d+ more problems\)"):
        load_checkpoint(path)
