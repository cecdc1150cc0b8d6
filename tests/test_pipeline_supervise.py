"""The supervised V/L labels follow the model's conventions, and V and L learn from them."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine import nets, render
from engine.config import load_config
from engine.data.mesh import load_base_mesh
from engine.data.synth import SynthConfig, sample_params
from engine.data.synth import render as synth_render
from engine.pipeline.supervise import net_labels

PIXEL_CENTRES = render.RasterOptions(supersample=False, half_pixel=False)


def test_labels_re_render_each_image_from_its_canonical_albedo_and_normals():
    """The same objects at view 0 give the canonical albedo and normals; shaded with light_params of the
    light label and seen in view_to_transform of the view label by the model's renderer, they give back
    each render. Taking the camera-frame light as the canonical one (no Rᵀ) does clearly worse."""
    cfg = load_config("default")
    synth, mesh = SynthConfig(image_size=64), load_base_mesh()
    params = sample_params(synth, mesh, 3, np.arange(8))
    params = replace(params, view=np.concatenate([params.view[:, :3], np.zeros_like(params.view[:, 3:])], 1))
    seen, canon = synth_render(synth, mesh, params), synth_render(synth, mesh,
                                                                   replace(params, view=np.zeros_like(params.view)))
    views, lights = net_labels(cfg, torch.from_numpy(params.view).float(), torch.from_numpy(params.light).float())
    view_t = nets.view_to_transform(views, cfg.xyz_rotation_range, cfg.xy_translation_range, cfg.z_translation_range)
    assert torch.allclose(view_t, torch.from_numpy(params.view).float(), atol=1e-6)
    albedo = torch.from_numpy(canon["albedo"]).float().permute(0, 3, 1, 2) / 127.5 - 1
    normal = torch.from_numpy(canon["normal"].astype(np.float32))
    depth = torch.from_numpy(canon["depth"])
    target = torch.from_numpy(seen["rgb"]).float().permute(0, 3, 1, 2) / 127.5 - 1
    mask = torch.from_numpy(seen["mask"]).float()[:, None]
    inside = -torch.nn.functional.max_pool2d(-mask, 5, 1, 2) > 0.5  # 2 pixels inside the silhouette

    def error(light: torch.Tensor) -> float:
        k_a, k_d, direction = nets.light_params(light)
        image, _, _ = render.shade(albedo, normal, k_a, k_d, direction)
        recon, _, _ = render.render_view(image.clamp(-1, 1), depth, view_t, render.Camera(64), PIXEL_CENTRES)
        return float((recon - target).abs().mul(inside).sum() / inside.sum() / 3)

    light = torch.from_numpy(params.light).float()
    camera_frame = nets.light_units(light[:, 0], light[:, 1], render.light_direction(light[:, 2:]))
    print(f"labelled {error(lights):.4f}, camera-frame light {error(camera_frame):.4f}")
    assert np.degrees(np.abs(params.view[:, 1])).max() > 20  # some images are turned by more than 20°
    assert error(lights) < 0.05
    assert error(lights) < 0.6 * error(camera_frame)


def test_train_views_teaches_v_and_l_the_labels_and_nothing_else():
    from test_pipeline_assets import tiny_config, tiny_generator
    from test_pipeline_steps import changed_nets, make_model, snapshot

    from engine.pipeline.supervise import LabelTraining, label_errors, labelled_renders, train_on_labels

    torch.manual_seed(0)
    cfg = tiny_config()
    model = make_model(cfg, tiny_generator())
    data = labelled_renders(cfg, 0, np.arange(96), chunk=40)
    assert data.images.shape == (96, 3, 64, 64) and data.views.shape == (96, 6) and data.lights.shape == (96, 4)
    before_errors, before = label_errors(model, data), snapshot(model)
    losses = []
    train_on_labels(model, data, LabelTraining(iters=150, batch=16, lr=1e-3), lambda it, loss: losses.append(loss))
    after = label_errors(model, data)
    print(before_errors, after)
    assert len(losses) == 150 and changed_nets(before, model) == {"netV", "netL"}
    frontal = float(data.views[:, 1].abs().mean() * cfg.xyz_rotation_range)  # V's units × range = degrees
    assert abs(before_errors["yaw_deg"] - frontal) < 0.2 * frontal  # V starts near the mean (frontal) view
    assert after["yaw_deg"] < 0.5 * frontal
    assert after["light_direction_deg"] < 0.8 * after["light_direction_mean_deg"]


def test_depth_and_albedo_labels_are_the_input_frame_maps_and_teach_d_and_a_alone():
    """Under view_frame "input" the canonical maps of a render are its camera-frame depth and albedo: the
    model shades and renders them (identity view) back into the image. Teaching "depth" and "albedo"
    changes D and A only and brings both nearer their labels; the object frame is refused."""
    from test_pipeline_assets import tiny_config, tiny_generator
    from test_pipeline_steps import changed_nets, make_model, snapshot

    from engine.errors import EngineError
    from engine.pipeline.supervise import LabelTraining, check_groups, label_errors, labelled_renders, train_on_labels

    torch.manual_seed(0)
    cfg = tiny_config('view_frame="input"', 'step3_nets=["netD","netA"]')
    model = make_model(cfg, tiny_generator())
    data = labelled_renders(cfg, 0, np.arange(64), chunk=40)
    assert ((data.depths < 1.1) == data.masks).all() and data.albedos.shape == data.images.shape
    view_t = nets.view_to_transform(data.views, cfg.xyz_rotation_range, cfg.xy_translation_range,
                                    cfg.z_translation_range)
    k_a, k_d, canonical = nets.light_params(data.lights)
    camera = torch.einsum("bij,bj->bi", render.transform_from_view(view_t)[0], canonical)
    image, _, _ = render.shade(data.albedos, render.normals_from_depth(data.depths, model.cam), k_a, k_d, camera)
    inside = -torch.nn.functional.max_pool2d(-data.masks[:, None].float(), 5, 1, 2) > 0.5
    image_unturned, _, _ = render.shade(data.albedos, render.normals_from_depth(data.depths, model.cam), k_a, k_d,
                                        canonical)

    def error(shaded: torch.Tensor) -> float:
        return float((shaded - data.images).abs().mul(inside).sum() / inside.sum() / 3)

    print(f"re-shading error {error(image):.4f}, with the canonical light {error(image_unturned):.4f}")
    assert error(image) < 0.05 and error(image) < 0.7 * error(image_unturned)
    with pytest.raises(EngineError, match="view_frame"):
        check_groups(tiny_config(), ("depth",))
    with pytest.raises(EngineError, match="teach one or more"):
        check_groups(cfg, ("shape",))
    groups = ("depth", "albedo")
    before_errors, before = label_errors(model, data, groups), snapshot(model)
    train_on_labels(model, data, LabelTraining(iters=120, batch=16, lr=1e-3, teach=groups))
    after = label_errors(model, data, groups)
    print(before_errors, after)
    assert changed_nets(before, model) == {"netD", "netA"} and set(after) == set(before_errors)
    assert after["depth_mad_deg"] < 0.7 * before_errors["depth_mad_deg"]
    assert after["depth_side_x100"] < 0.5 * before_errors["depth_side_x100"]
    assert after["albedo_mae"] < 0.7 * before_errors["albedo_mae"]


def test_the_cosine_schedule_lowers_the_rate_to_zero_at_the_last_step():
    """Hand values of the half cosine, and train_on_labels using them: the last step (rate 0) moves nothing,
    so two cosine steps leave the nets where one step at the full rate does."""
    from test_pipeline_assets import tiny_config, tiny_generator
    from test_pipeline_steps import make_model
    from torch.nn.utils import parameters_to_vector

    from engine.pipeline.supervise import LabelTraining, labelled_renders, step_lr, train_on_labels

    cosine = LabelTraining(iters=5, lr=1e-3, schedule="cosine")
    assert [step_lr(cosine, it) for it in (1, 3, 5)] == pytest.approx([1e-3, 5e-4, 0.0], abs=1e-12)
    assert step_lr(cosine, 2) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)) / 2)
    assert step_lr(replace(cosine, schedule="constant"), 5) == 1e-3
    with pytest.raises(ValueError, match="cosin"):
        step_lr(replace(cosine, schedule="cosin"), 1)
    cfg = tiny_config()
    data = labelled_renders(cfg, 0, np.arange(8))
    trained = []
    for opts in (LabelTraining(iters=2, batch=4, schedule="cosine"), LabelTraining(iters=1, batch=4)):
        torch.manual_seed(0)
        model = make_model(cfg, tiny_generator())
        train_on_labels(model, data, opts)
        trained.append(parameters_to_vector(model.nets["netV"].parameters()))
    torch.manual_seed(0)
    untrained = parameters_to_vector(make_model(cfg, tiny_generator()).nets["netV"].parameters())
    assert torch.equal(trained[0], trained[1]) and not torch.equal(trained[0], untrained)


def test_the_depth_label_loss_is_blind_to_the_objects_scale_and_places_the_background():
    """A uniformly scaled object (the same image and normals) with the background at `far` costs nothing;
    an added relief or a background elsewhere costs its hand-computed squares."""
    from engine.pipeline.supervise import depth_label_loss

    truth = torch.full((1, 4, 4), 1.1)
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True
    truth[masks] = torch.tensor([0.95, 1.0, 1.0, 1.05])
    scaled = torch.where(masks, truth * 0.97, torch.tensor(1.02))
    assert float(depth_label_loss(scaled, truth, masks, far=1.02)) < 1e-12
    bumped = scaled.clone()
    bumped[0, 1, 1] *= math.e ** 0.02  # one object pixel's log depth up by 0.02: deviations 0.015, −0.005 ×3
    expected = (0.015**2 + 3 * 0.005**2) / 4
    assert float(depth_label_loss(bumped, truth, masks, 1.02)) == pytest.approx(expected, rel=1e-4)
    assert float(depth_label_loss(scaled, truth, masks, far=1.0)) == pytest.approx(0.02**2, rel=1e-4)


def test_the_normal_label_loss_is_one_minus_the_cosine_of_the_tilt_over_the_object_alone():
    """A plane tilted by 20° against a fronto-parallel one costs 1 − cos 20° wherever the object is, whatever lies
    outside it; the same plane at another scale costs nothing."""
    from engine.pipeline.supervise import normal_label_loss

    cam = render.Camera(image_size=16)
    x = (torch.arange(16.0) - cam.cx) / cam.fx
    tilt = math.radians(20)
    plane = (1 / (math.sin(tilt) * x + math.cos(tilt))).expand(16, 16)[None].clone()  # n·P = 1, n = (sin, 0, cos)
    flat = torch.ones(1, 16, 16)
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, 4:12, 3:13] = True
    loss = float(normal_label_loss(plane, flat, masks, cam))
    assert loss == pytest.approx(1 - math.cos(tilt), rel=1e-4)
    noisy = torch.where(masks, plane, torch.rand(1, 16, 16) + 0.5)
    assert float(normal_label_loss(noisy, flat, masks, cam)) == pytest.approx(loss, rel=1e-6)
    assert float(normal_label_loss(plane * 0.9, plane, masks, cam)) < 1e-6


def test_the_normal_weight_changes_what_d_learns_and_nothing_else():
    """One step with the normal term moves D elsewhere than without it; it does not touch V and L's lessons."""
    from test_pipeline_assets import tiny_config, tiny_generator
    from test_pipeline_steps import make_model
    from torch.nn.utils import parameters_to_vector

    from engine.pipeline.supervise import LabelTraining, labelled_renders, train_on_labels

    cfg = replace(tiny_config(), view_frame="input", step3_nets=("netD", "netA"))
    data = labelled_renders(cfg, 0, np.arange(8))
    trained = {}
    for teach, net in ((("depth",), "netD"), (("views",), "netV")):
        for weight in (0.0, 1.0):
            torch.manual_seed(0)
            model = make_model(cfg, tiny_generator())
            train_on_labels(model, data, LabelTraining(iters=1, batch=4, teach=teach, normal_weight=weight))
            trained[teach, weight] = parameters_to_vector(model.nets[net].parameters())
    assert not torch.equal(trained[("depth",), 0.0], trained[("depth",), 1.0])
    assert torch.equal(trained[("views",), 0.0], trained[("views",), 1.0])


def test_a_mirrored_render_is_the_mirrored_objects_render_and_flip_mirrors_only_some(tmp_path, capsys):
    """mirror_some mirrors the chosen renders' image, depth, albedo and mask and nothing else; the mirrored
    depth's normals are the mirror of the true normals with x negated (the principal point is the centre),
    so a mirrored render is a valid lesson. Teaching with --flip moves D elsewhere than without it, and
    --flip is refused where views would be taught, before anything is rendered."""
    from test_pipeline_assets import tiny_config, tiny_generator
    from test_pipeline_steps import make_model
    from torch.nn.utils import parameters_to_vector

    from engine.cli import main
    from engine.pipeline.supervise import LabelTraining, labelled_renders, mirror_some, train_on_labels

    cfg = replace(tiny_config(), view_frame="input", step3_nets=("netD", "netA"))
    data = labelled_renders(cfg, 0, np.arange(4))
    which = torch.tensor([True, False, True, False])
    out = mirror_some(data, which)
    for field in ("images", "depths", "albedos", "masks"):
        a, b = getattr(data, field), getattr(out, field)
        assert torch.equal(b[which], a[which].flip(-1)) and torch.equal(b[~which], a[~which])
    assert torch.equal(out.views, data.views) and torch.equal(out.lights, data.lights)
    model = make_model(cfg, tiny_generator())
    normals, mirrored = (render.normals_from_depth(d.double(), model.cam) for d in (data.depths, out.depths))
    expected = normals.flip(2) * normals.new_tensor([-1.0, 1.0, 1.0])
    inner = out.masks[which][:, 1:-1, 1:-1]
    assert inner.sum() > 100
    assert torch.allclose(mirrored[which][:, 1:-1, 1:-1][inner], expected[which][:, 1:-1, 1:-1][inner], atol=1e-9)
    trained = []
    for flip in (False, True):
        torch.manual_seed(0)
        model = make_model(cfg, tiny_generator())
        train_on_labels(model, data, LabelTraining(iters=2, batch=4, teach=("depth",), flip=flip))
        trained.append(parameters_to_vector(model.nets["netD"].parameters()))
    assert not torch.equal(*trained)
    assert main(["train-views", "--flip", "--iters", "1", "--out", str(tmp_path / "v.pth")]) == 2
    assert "--flip" in capsys.readouterr().err and not (tmp_path / "v.pth").exists()


def test_fresh_renders_replace_the_pool_round_robin_with_renders_never_drawn(tmp_path, capsys):
    """Hand values of pool_indices; after two steps with fresh=3 on a pool of 5 the pool holds exactly the
    renders pool_indices names (5..10 rendered once each, in order), which is what a resumed run rebuilds."""
    from test_pipeline_assets import tiny_config, tiny_generator
    from test_pipeline_steps import make_model

    from engine.cli import main
    from engine.pipeline.supervise import LabelTraining, labelled_renders, pool_indices, train_on_labels

    assert pool_indices(5, 0).tolist() == [0, 1, 2, 3, 4]
    assert pool_indices(5, 3).tolist() == [5, 6, 7, 3, 4]
    assert pool_indices(5, 7).tolist() == [10, 11, 7, 8, 9]
    assert pool_indices(5, 12).tolist() == [15, 16, 12, 13, 14]
    cfg = replace(tiny_config(), view_frame="input", step3_nets=("netD", "netA"))
    data, asked = labelled_renders(cfg, 0, np.arange(5)), []

    def renders(indices: np.ndarray):
        asked.append(indices.tolist())
        return labelled_renders(cfg, 0, indices)

    opts = LabelTraining(iters=2, batch=4, pool=5, teach=("depth",), fresh=3)
    with pytest.raises(ValueError, match="renders"):
        train_on_labels(make_model(cfg, tiny_generator()), data, opts)
    train_on_labels(make_model(cfg, tiny_generator()), data, opts, renders=renders)
    assert asked == [[5, 6, 7], [8, 9, 10]]
    expected = labelled_renders(cfg, 0, pool_indices(5, 6))
    assert all(torch.equal(a, b) for a, b in zip(data, expected, strict=True))
    argv = ["train-views", "--teach", "depth", "--pool", "4", "--fresh", "5", "--out", str(tmp_path / "f.pth")]
    assert main(argv) == 2
    assert "--fresh" in capsys.readouterr().err and not (tmp_path / "f.pth").exists()


def test_train_views_command_writes_a_views_only_checkpoint_the_default_preset_loads(tmp_path, capsys):
    from engine.cli import main
    from engine.nets import describe_checkpoint
    from engine.pipeline.run import build_model, load_frozen
    from engine.progress import Progress

    out = tmp_path / "vl.pth"
    assert main(["train-views", "--iters", "3", "--pool", "8", "--batch", "4", "--n-eval", "4", "--threads", "1",
                 "--out", str(out)]) == 0
    assert "held-out yaw error" in capsys.readouterr().out
    assert describe_checkpoint(out) == "gan2shape, 64², netV/netL, width 0.25"  # the preset's view_light_width
    saved = torch.load(out, weights_only=True)
    meta = saved["meta"]
    assert meta["iters"] == 3 and meta["pool"] == 8 and set(meta["held_out"]) >= {"yaw_deg", "light_direction_deg"}
    cfg = load_config("default", overrides=[f'pretrain="{out}"'])
    model, need_prior = build_model(cfg, load_frozen(cfg, torch.device("cpu"), Progress()), torch.device("cpu"))
    assert need_prior  # no netD: the ellipsoid is still fitted
    for name in ("netV", "netL"):
        assert all(torch.equal(v, saved[name][k]) for k, v in model.nets[name].state_dict().items())
    assert main(["train-views", "--iters", "0", "--out", str(tmp_path / "bad.pth")]) == 2
    assert "must be positive" in capsys.readouterr().err and not (tmp_path / "bad.pth").exists()


def test_train_views_teaches_depth_beside_the_presets_own_views_and_lights(tmp_path, capsys):
    """--teach depth --keep-pretrain writes D with the preset's shipped V and L, untouched: a file that can
    replace the preset's pretrain, after which no ellipsoid is fitted. The object frame is refused."""
    from engine.cli import main
    from engine.pipeline.run import build_model, load_frozen
    from engine.progress import Progress
    from engine.weights import resolve

    out = tmp_path / "dvl.pth"
    assert main(["train-views", "--teach", "depth", "--keep-pretrain", "--iters", "2", "--pool", "8",
                 "--batch", "4", "--n-eval", "4", "--threads", "1", "--out", str(out)]) == 0
    assert "held-out depth SIDE" in capsys.readouterr().out
    saved, shipped = torch.load(out, weights_only=True), torch.load(resolve("default-views-lights"), weights_only=True)
    assert set(saved) == {"netD", "netV", "netL", "meta"} and saved["meta"]["teach"] == ("depth",)
    for name in ("netV", "netL"):
        assert all(torch.equal(v, shipped[name][k]) for k, v in saved[name].items())
    cfg = load_config("default", overrides=[f'pretrain="{out}"'])
    model, need_prior = build_model(cfg, load_frozen(cfg, torch.device("cpu"), Progress()), torch.device("cpu"))
    assert not need_prior
    assert all(torch.equal(v, saved["netD"][k]) for k, v in model.nets["netD"].state_dict().items())
    bad = tmp_path / "object.pth"
    assert main(["train-views", "--teach", "depth", "--set", 'view_frame="object"', "--iters", "1", "--out",
                 str(bad)]) == 2
    assert "view_frame" in capsys.readouterr().err and not bad.exists()


def test_train_views_starts_the_taught_nets_from_a_given_checkpoint(tmp_path, capsys):
    """--start-from teaches on from a checkpoint's D (here the shipped pretrain's), not from the official
    initialisation: one step at a tiny rate stays near it, far nearer than a fresh start does. A file
    without the taught net is refused, naming the file and the net, and nothing is written."""
    from engine.cli import main
    from engine.weights import resolve

    shipped = resolve(load_config("default").pretrain)
    argv = ["train-views", "--teach", "depth", "--iters", "1", "--pool", "4", "--batch", "2", "--n-eval", "2",
            "--threads", "1", "--lr", "1e-7"]
    warm, cold = tmp_path / "warm.pth", tmp_path / "cold.pth"
    assert main([*argv, "--start-from", "default-pretrain", "--out", str(warm)]) == 0
    assert main([*argv, "--out", str(cold)]) == 0
    start = torch.load(shipped, weights_only=True)["netD"]
    warm_d, cold_d = (torch.load(f, weights_only=True)["netD"] for f in (warm, cold))

    def distance(state: dict) -> float:
        return sum(float((state[k].float() - v.float()).abs().sum()) for k, v in start.items())

    assert 0 < distance(warm_d) < 1e-3 * distance(cold_d)
    assert torch.load(warm, weights_only=True)["meta"]["started_from"]["path"] == str(shipped)
    views_only = resolve("default-views-lights")
    bad = tmp_path / "bad.pth"
    capsys.readouterr()
    assert main([*argv, "--start-from", str(views_only), "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(views_only) in err and "netD" in err and not bad.exists()
    assert main([*argv, "--start-from", str(tmp_path / "none.pth"), "--out", str(bad)]) == 2
    assert "none.pth" in capsys.readouterr().err and not bad.exists()


def test_train_views_at_its_own_width_loads_only_into_a_preset_of_that_width(tmp_path, capsys):
    from engine.cli import main
    from engine.errors import EngineError
    from engine.nets import describe_checkpoint
    from engine.pipeline.run import build_model, load_frozen
    from engine.progress import Progress

    out = tmp_path / "slim.pth"
    assert main(["train-views", "--iters", "2", "--pool", "8", "--batch", "4", "--n-eval", "4", "--threads", "1",
                 "--set", "view_light_width=0.125", "--out", str(out)]) == 0
    assert describe_checkpoint(out) == "gan2shape, 64², netV/netL, width 0.125"
    assert torch.load(out, weights_only=True)["meta"]["set"] == ["view_light_width=0.125"]
    cpu = torch.device("cpu")
    cfg = load_config("default", overrides=[f'pretrain="{out}"', "view_light_width=0.125"])
    model, _ = build_model(cfg, load_frozen(cfg, cpu, Progress()), cpu)
    assert model.nets["netV"].network[0].out_channels == 8 and model.nets["netD"].network[0].out_channels == 32
    wide = load_config("default", overrides=[f'pretrain="{out}"', "view_light_width=none"])
    with pytest.raises(EngineError, match="has shape"):
        build_model(wide, load_frozen(wide, cpu, Progress()), cpu)
    assert main(["train-views", "--iters", "1", "--set", "view_light_width=0", "--out", str(tmp_path / "b.pth")]) == 2
    assert "view_light_width" in capsys.readouterr().err and not (tmp_path / "b.pth").exists()


@pytest.mark.parametrize("fresh", [[], ["--fresh", "3"]], ids=["pool", "fresh"])
def test_a_stopped_train_views_resumes_where_it_stopped_and_ends_as_an_uninterrupted_run(tmp_path, capsys,
                                                                                         monkeypatch, fresh):
    """Ctrl-C after step 4 of 6 leaves the step-4 state (saved every 2) and no checkpoint; --resume with other
    options is refused, with the same ones it runs steps 5 and 6 only and writes the uninterrupted run's file.
    With --fresh the resumed run must rebuild the pool the stopped one had."""
    import json

    import engine.pipeline.supervise as supervise
    from engine.cli import main
    from engine.pipeline.state import state_path_for

    argv = ["train-views", "--teach", "depth", "--keep-pretrain", "--iters", "6", "--pool", "8", "--batch", "4",
            "--n-eval", "4", "--threads", "1", "--save-every", "2", "--lr-schedule", "cosine", *fresh]
    full, out = tmp_path / "full.pth", tmp_path / "stopped.pth"
    assert main([*argv, "--out", str(full)]) == 0
    assert not state_path_for(full).exists()
    real, calls = supervise.label_loss, []

    def counted(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # Ctrl-C in step 5
        return real(*args)

    monkeypatch.setattr(supervise, "label_loss", counted)
    assert main([*argv, "--out", str(out)]) == 130
    state = state_path_for(out)
    assert not out.exists() and torch.load(state, weights_only=True)["iter"] == 4
    capsys.readouterr()
    assert main([*argv, "--lr", "1e-4", "--resume", "--out", str(out)]) == 2
    assert str(state) in capsys.readouterr().err and not out.exists()
    calls.clear()
    assert main([*argv, "--resume", "--json", "--out", str(out)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert next(e for e in events if e["event"] == "start")["resumed_at"] == 4 and len(calls) == 2
    assert not state.exists()
    a, b = torch.load(full, weights_only=True), torch.load(out, weights_only=True)
    assert all(torch.equal(v, b["netD"][k]) for k, v in a["netD"].items())
    assert a["meta"]["held_out"] == b["meta"]["held_out"]


def test_the_shipped_pretrain_reads_held_out_renders():
    """The default preset loads weights/default/pretrain.pth: the shipped views-lights' V and L, which read
    the view and light of held-out renders (seed 1) far better than always answering frontal / L's mean,
    and D (with skips) taught the category's depth, which no ellipsoid fit replaces and which beats the
    ellipsoid of the true silhouette on both metrics."""
    from engine import prior
    from engine.commands.train_views import HELD_OUT_SEED
    from engine.metrics import depth_metrics
    from engine.pipeline.run import build_model, load_frozen
    from engine.pipeline.supervise import label_errors, labelled_renders
    from engine.progress import Progress
    from engine.weights import resolve

    cpu = torch.device("cpu")
    cfg = load_config("default")
    assert cfg.pretrain == "default-pretrain"
    model, need_prior = build_model(cfg, load_frozen(cfg, cpu, Progress()), cpu)
    assert not need_prior
    skips = model.nets["netD"].skips  # the preset's skip D, taught with its skips (a plain file leaves them 0)
    assert cfg.depth_skips and all(conv.weight.abs().sum() > 0 for conv in skips)
    views_lights = torch.load(resolve("default-views-lights"), weights_only=True)
    for name in ("netV", "netL"):
        assert all(torch.equal(v, views_lights[name][k]) for k, v in model.nets[name].state_dict().items())
    data = labelled_renders(cfg, HELD_OUT_SEED, np.arange(24))
    errors = label_errors(model, data, ("views", "depth"))
    frontal = float(torch.rad2deg(model.to_transform(data.views)[:, 1].abs()).mean())
    ellipsoids = torch.stack([prior.ellipsoid_for(m.float(), cfg) for m in data.masks])
    baseline = depth_metrics(ellipsoids, data.depths, data.masks, model.cam, data.masks).summary()
    print(errors, frontal, baseline)
    assert errors["yaw_deg"] < 0.3 * frontal and errors["pitch_deg"] < 6
    assert errors["light_direction_deg"] < 0.5 * errors["light_direction_mean_deg"]
    assert errors["depth_mad_deg"] < 0.36 * baseline["mad_deg"]["mean"]  # session 20's plain D: 0.38
    assert errors["depth_side_x100"] < 0.5 * baseline["side_x100"]["mean"]
