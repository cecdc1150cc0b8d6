"""The method's configuration: one typed dataclass, presets as data, TOML and `--set` overrides.

Public API (the pipeline codes against this):

    Config                      flat dataclass, every key of the official configs (spec §12) with the
                                official names (stage_len_dict, flip1_cfg, F1_d, batchsize, ...) plus the
                                product's own keys (device, seed, perceptual, mask_fallback, net_width, ...)
    ProjectorConfig             GAN-inversion settings (nested as `cfg.projector`, keys `projector.<name>`)
    PRESETS: dict[str, dict]    overrides of the Config defaults per preset name (data, not code)
    preset_names() -> list[str]
    load_config(preset="default", toml_path=None, overrides=()) -> Config
        preset values, then the TOML file (flat keys or a [projector] table), then `key=value`
        strings (value parsed as TOML, else taken as a bare string). Unknown keys, wrong types and
        inconsistent values raise EngineError.
    config_to_dict(cfg) -> dict  plain data (for result.json); load_config(overrides=...) accepts it back
    Phase                       one entry of the schedule (stage, step, iterations, nets, flip1, flip3, bank_size)
    schedule(cfg, num_images=1) -> list[Phase]
        "prior" (ellipsoid fit when cfg.pretrain is None; a checkpoint without netD also needs it,
        which only the loader can tell: load_gan2shape_checkpoint returns the nets found), then per stage "step1",
        "step2", "collect" (no-grad passes filling the bank) and "step3" (spec §1.2, §1.6, §1.8).
    NET_NAMES = ("netD", "netA", "netV", "netL", "netEnc")

Official numbers come from spec §1.2, §1.8 and §12. The `default` preset is the embedded 64² model
(schedule after docs/cpu-cost.md's 5-minute starting point); `fast` is for CPU smoke runs only.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EngineError

NET_NAMES = ("netD", "netA", "netV", "netL", "netEnc")
STEP3_NETS = ("netD", "netA", "netV", "netL")  # what step 3 can train (official: all of them)

DEFAULT_RAND_LIGHT = (-1.0, 1.0, -0.2, 0.8, -0.1, 0.6, -0.6)
SYNFACE_RAND_LIGHT = (-0.9, 0.9, -0.3, 0.8, -0.1, 0.7, -0.4)

CATEGORIES = ("face", "cat", "car", "church", "synface", "object")
PERCEPTUAL_CHOICES = ("auto", "lpips-vgg", "mobilenet-v2")
STEP2_FEATURE_LOSSES = ("discriminator", "perceptual", "none")
PRIOR_FRAMES = ("canonical", "input", "input_object", "input_warped")
VIEW_FRAMES = ("object", "input")
MASK_FALLBACKS = ("grabcut", "full", "error")
PROJECTIONS = ("encoder", "optimize", "walk")
BANK_LABELS = ("sampled", "fitted")
BANK_GAINS = ("none", "scalar", "channel")


@dataclass
class ProjectorConfig:
    """W-space GAN inversion (used when no latent file is given), after rosinality's projector.py."""

    iters: int = 300
    lr: float = 0.1
    lr_rampup: float = 0.05  # fraction of iterations with a linear warm-up
    lr_rampdown: float = 0.25  # fraction of iterations with a cosine cool-down
    lam_l1: float = 1.0
    lam_perc: float = 1.0
    noise_strength: float = 0.05  # exploration noise on w, in units of the latent spread
    noise_ramp: float = 0.75  # fraction of iterations after which the exploration noise is zero
    mean_samples: int = 4096  # samples for the mean latent and the latent spread
    # Product: 0 = start at the mean latent (rosinality). N > 0: start at the best of N sampled latents under
    # the projector's own loss; from the mean, an input seen from far off the mean view often ends in a
    # latent of another pose (docs/default-model.md item 17).
    start_candidates: int = 0
    use_mask: bool = False  # restrict the losses to the object mask (real photos with clutter)


@dataclass
class Config:
    """Everything that defines one reconstruction run; field names follow the official YAML keys."""

    preset: str = "default"
    category: str = "object"
    # --- run structure (§1.3, §1.7, §1.9) ---
    joint_train: bool = False
    independent: bool = True
    share_weight: bool = True
    reset_weight: bool = True
    save_results: bool = True
    # --- schedule (§1.2, §1.6, §1.8) ---
    num_stage: int = 4
    stage_len_dict: tuple[int, ...] = (600, 600, 400)  # step1, step2, step3 iterations of stage 0
    stage_len_dict2: tuple[int, ...] = (200, 500, 300)  # same for stages >= 1
    flip1_cfg: tuple[bool, ...] = (False, False, False, False)
    flip3_cfg: tuple[bool, ...] = (True, False, False, False)
    collect_iters: int = 100  # no-grad step-2 batches collected into the bank per stage
    collect_iters2: int | None = None  # product: bank batches for stages >= 1 (None = collect_iters)
    batchsize: int = 16
    # --- images ---
    image_size: int = 128
    crop: int | None = None  # official: centre crop in pixels of the original data image
    # Side of the original data images `crop` refers to (None = gan_size). The official release data
    # are not available (spec §15.1); 256 for cat/synface follows Unsup3d's 256² data. The crop is
    # applied as the fraction crop/crop_reference_size to any input and to the GAN image.
    crop_reference_size: int | None = None
    load_gt_depth: bool = False
    image_list: str | None = None
    # --- optimisation (§1.4) ---
    lr: float = 1e-4
    weight_decay: float = 5e-4
    adam_betas: tuple[float, ...] = (0.9, 0.999)
    lam_perc: float = 0.5
    # Product: learning rate of the latent-offset encoder E (None = lr, official). Step 2 starts from
    # |Δw| ≈ 0; short CPU schedules need E to move faster than the 3D nets.
    lr_enc: float | None = None
    # Product: learning rate of the depth net D (None = lr, official). From a D taught the category's depth
    # (`engine train-views --teach depth`) the steps at `lr` move the depth without improving it (item 22).
    lr_depth: float | None = None
    lam_smooth: float = 0.01
    lam_regular: float = 0.01
    # Product: weight of a step-3 term that teaches V the view each bank sample was rendered from (its
    # pseudo sample's sampled view; MSE in V's units). 0 = official. Nets trained from scratch on one
    # image barely turn V in a short schedule (predicted yaw ≈ 0.02 × the true yaw after 400 step-3
    # iterations on the known-shape test), so the bank's views cannot constrain the shape without it.
    lam_bank_view: float = 0.0
    # Product: the same for L and the light each bank sample's pseudo sample was shaded with (MSE in L's
    # units). 0 = official. With the data's flat grey background L's own estimate decides the normals:
    # known-shape head, 600 step-3 iterations (bench/bench_known_shape.py --scales 4 --frontal), MAD 57.9°
    # without, 41.6° with it at 100; with a perfect bank (--bank exact) 48.5° and 23.9°.
    lam_bank_light: float = 0.0
    # Product: what the bank terms teach. "sampled" (official meaning of a bank sample): the view and
    # light its pseudo sample was rendered with. "fitted": those refitted by `bank_label_iters` Adam steps
    # (lr `bank_label_lr`) so that the current canonical estimate re-renders the projection (masked L1);
    # the GAN's projection moves pose and light away from the sampled ones. Measured worse on the
    # known-shape head (bench_known_shape.py --scales 4 --frontal --seeds 0 1 2, lam_bank_light 100: MAD
    # 51.2/45.7/43.7° against 42.3/39.3/42.4° sampled): a wrong shape explains the shading with a wrong light.
    bank_labels: str = "sampled"
    # Product: a gain each bank sample's re-rendering is multiplied by before step 3 compares it with the
    # projection, refitted at every step by least squares over the sample's valid pixels and not
    # differentiated. "none" (official). "scalar": one per sample. "channel": one per sample and colour
    # channel. The GAN recolours a projection as it relights it (docs/default-model.md item 17), which one
    # shared albedo cannot explain; the gain absorbs the overall colour so that the pattern of the shading
    # across the pixels is what reaches D and A.
    bank_gain: str = "none"
    # Product: the weight of the input image's reconstruction (and its mirrored twin) in step 3, next to the
    # bank's; 1 = official (spec §13.8). Smoothness keeps its own weight. On the default model the input
    # term's gradient on D points slightly away from the true shape and the bank's towards it
    # (bench/bench_step3_gradients.py), yet 0.25 and 3 both scored worse than 1 (docs/default-model.md item 18).
    lam_step3_input: float = 1.0
    # Product: iterations over which each step 3's learning rate ramps linearly up to `lr` (0 = official, the
    # full rate from the first step). Every phase starts a new Adam, whose first steps move each weight by
    # about the learning rate whatever the gradient; on the default model the depth's agreement with the
    # truth drops in step 3's first 20 iterations on 3 of 6 images, on one for good
    # (bench/bench_step3_gradients.py, docs/default-model.md item 18).
    step3_warmup: int = 0
    # Product: weight of a step-2 term (and of the per-sample fit with `projection = "optimize"`): the MSE
    # of V's and L's reading of each projection against the view and light its pseudo sample was rendered
    # with. 0 = official. The GAN's projections barely follow those (docs/default-model.md item 12); the
    # term needs a V and L that read the category's views and lights (`engine train-views`).
    lam_proj_pose: float = 0.0
    # The nets step 3 trains (official: all four). A pretrained V and L that already know the category's
    # views and lights (engine train-views) can be kept as they are by leaving them out.
    step3_nets: tuple[str, ...] = STEP3_NETS
    bank_label_iters: int = 50
    bank_label_lr: float = 0.02
    # --- geometry and rendering (§2.5, §3) ---
    min_depth: float = 0.9
    max_depth: float = 1.1
    border_depth: float = 1.04
    border_clamp_factor: float = 1.02  # QUIRK (Unsup3d uses 1.0)
    xyz_rotation_range: float = 60.0
    xy_translation_range: float = 0.1
    z_translation_range: float = 0.0
    add_mean_L: bool = True
    add_mean_V: bool = True
    rot_center_depth: float = 1.0
    fov: float = 10.0
    tex_cube_size: int = 2
    renderer_min_depth: float = 0.1
    renderer_max_depth: float = 10.0
    # QUIRKS of the official renderer (§3.5): 2× supersampling and a +0.5 px sample offset. Data rendered
    # at the pixel centres (the default category) are reproduced exactly only with both off.
    raster_supersample: bool = True
    raster_half_pixel: bool = True
    # --- pseudo samples (§5) ---
    view_scale: float = 1.0
    rand_light: tuple[float, ...] = DEFAULT_RAND_LIGHT
    view_mvn_path: str | None = None  # manifest name or file; None = built-in default (engine.nets)
    light_mvn_path: str | None = None
    relative_enc: bool = False
    use_mask: bool = False
    # Product: how step 2 projects pseudo samples into the GAN. "encoder" (official): E learns Δw during
    # the step-2 iterations, then projects the bank. "optimize": no E and no step-2 phase; every bank
    # batch gets its own Δw from `projection_iters` Adam steps (lr `projection_lr`) on the step-2 loss,
    # which short CPU schedules can afford while E barely moves from Δw ≈ 0 in them.
    # "walk": no pseudo image is projected; each bank sample is the GAN's image of the input's latent moved
    # towards its pseudo sample's sampled view and light, by `walk_steps` steps along a linear map from V's
    # and L's readings to W (a ridge regression over `walk_samples` GAN samples, fitted at the first
    # collection): the bank shows the GAN's own turned and relit object, not the current shape's rendering.
    # On the default model level with "optimize" at three quarters of its time (docs/default-model.md item 17).
    projection: str = "encoder"
    projection_iters: int = 40
    projection_lr: float = 0.05
    walk_samples: int = 2048
    walk_steps: int = 6
    F1_d: int = 2  # official key name
    truncation: float = 1.0
    z_dim: int = 512
    # --- weak shape prior (§4) ---
    prior_near: float = 0.91
    prior_far: float = 1.02
    prior_fit_iters: int = 1000
    prior_fit_lr: float = 1e-4
    prior_mask_threshold: float = 0.7
    prior_center_quirk: bool = True  # QUIRK: vertical squash about row S/2 instead of the bbox centre
    # Where the ellipsoid describes the object. "canonical" (official): D's canonical depth is fitted to
    # it, which is the input's frame only while V's view of the input is near the mean view (true of the
    # untrained V of car/church). "input": D's depth seen in V's view of the input is fitted to it, for a
    # pretrained V that turns the input away from frontal (`engine train-views`, docs/default-model.md
    # item 11). "input_object": only the object (the input's mask) is fitted through V's view; the rest of
    # the canonical map is fitted to the flat background `prior_far` of the canonical frame, as in the
    # official fit. With "input", a turned input's flat background becomes a tilted plane in the canonical
    # map, clamped into near strips at the borders that swing in front of the object in turned views
    # (item 13). "input_warped": the same object and background, but the ellipsoid is first carried into the
    # canonical frame (rasterized in the inverse of V's view) and fitted there by the official MSE; the fit
    # through the turned rasterization leaves D's depth noisier than the ellipsoid itself (item 20).
    prior_frame: str = "canonical"
    # Product: the frame of the canonical maps. "object": V's views and L's lights as V and L read them. "input":
    # every view re-expressed relative to V's (frozen) reading of the input and every light turned into the
    # input's camera frame, so the canonical maps are the input's own frame (as the official untrained V of
    # car/church gives) while the views a pretrained V reads keep the bank's pseudo samples in the category's
    # view range. Needs V kept out of step 3 and one image per run (no joint_train; `pretrain` sets "object").
    view_frame: str = "object"
    # --- weights ---
    gan_ckpt: str = "default"  # manifest name or path of the StyleGAN2 checkpoint
    gan_size: int = 64
    channel_multiplier: int = 1
    pretrain: str | None = None  # manifest name or path of a gan2shape checkpoint (netD, netA, ...)
    # --- logging / checkpoints of the official trainer ---
    save_checkpoint_freq: int = 500
    keep_num_checkpoint: int = 2
    use_logger: bool = True
    log_freq: int = 100
    num_gpus_official: int = 4  # GPUs of the official launch script (documents §1.9 semantics)
    # --- product additions ---
    device: str = "auto"
    seed: int = 0
    perceptual: str = "auto"  # auto: LPIPS-VGG when its ImageNet trunk is present, else MobileNetV2
    step2_feature_loss: str = "discriminator"  # official; "perceptual" swaps in LPIPS (cheaper on CPU)
    mask_fallback: str = "grabcut"  # when neither --mask nor an alpha channel is given
    net_width: float = 1.0  # width factor of D, A, V, L, E (1.0 = official sizes)
    view_light_width: float | None = None  # width factor of V and L alone (None = net_width)
    depth_skips: bool = False  # D's encoder levels added to its decoder's (nets.EDDeconv); official: none
    depth_image_skip: bool = False  # D's input added to its decoder at full resolution (two 3×3 convs); official: none
    depth_mirror_average: bool = False  # result's depth: mean with D's mirrored reading of the mirrored input
    depth_shift_average: int = 0  # result's depth: mean of D's readings of the input moved up to this many pixels
    max_input_side: int = 4096  # larger inputs are downscaled on load, with a warning
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)


_F4, _T4 = (False,) * 4, (True,) * 4

# Per-preset overrides of the dataclass defaults; official values from spec §12.
PRESETS: dict[str, dict[str, Any]] = {
    "car": dict(
        category="car", independent=False, share_weight=True, num_stage=4,
        stage_len_dict=(700, 700, 600), stage_len_dict2=(200, 500, 400), flip1_cfg=_F4, flip3_cfg=_F4,
        collect_iters=100, batchsize=8, image_size=128, relative_enc=False, use_mask=True,
        view_mvn_path="view-mvn", light_mvn_path="light-mvn", gan_ckpt="stylegan2-car", gan_size=512,
        channel_multiplier=2, F1_d=2, keep_num_checkpoint=2, step2_feature_loss="discriminator"),
    "church": dict(
        category="church", independent=False, share_weight=True, num_stage=4,
        stage_len_dict=(700, 700, 600), stage_len_dict2=(200, 500, 400), flip1_cfg=_F4, flip3_cfg=_F4,
        collect_iters=100, batchsize=8, image_size=128, relative_enc=False, use_mask=True, prior_far=1.0,
        view_mvn_path="view-mvn", light_mvn_path="light-mvn", gan_ckpt="stylegan2-church", gan_size=256,
        channel_multiplier=2, F1_d=2, keep_num_checkpoint=2, step2_feature_loss="discriminator"),
    "celeba": dict(
        category="face", independent=True, share_weight=False, num_stage=4,
        stage_len_dict=(600, 600, 400), stage_len_dict2=(200, 500, 300), flip1_cfg=_F4,
        flip3_cfg=(True, False, False, False), collect_iters=100, batchsize=16, image_size=128,
        relative_enc=True, view_scale=1.2, view_mvn_path="celeba-view-mvn", light_mvn_path="celeba-light-mvn",
        gan_ckpt="stylegan2-celeba", gan_size=128, channel_multiplier=1, F1_d=2, pretrain="celeba-pretrain",
        keep_num_checkpoint=1, step2_feature_loss="discriminator"),
    "cat": dict(
        category="cat", independent=True, share_weight=True, num_stage=4,
        stage_len_dict=(600, 600, 400), stage_len_dict2=(200, 500, 300), flip1_cfg=_F4,
        flip3_cfg=(True, False, False, False), collect_iters=100, batchsize=16, image_size=128, crop=170,
        crop_reference_size=256, relative_enc=True, view_scale=1.2, view_mvn_path="cat-view-mvn",
        light_mvn_path="cat-light-mvn", gan_ckpt="stylegan2-catface", gan_size=256, channel_multiplier=1, F1_d=2,
        pretrain="cat-pretrain",
        keep_num_checkpoint=1, step2_feature_loss="discriminator"),
    "synface": dict(
        category="synface", independent=True, share_weight=True, save_results=False, num_stage=1,
        stage_len_dict=(500, 500, 200), stage_len_dict2=(500, 500, 200), flip1_cfg=(False,), flip3_cfg=(True,),
        collect_iters=100, batchsize=16, image_size=64, crop=170, crop_reference_size=256, load_gt_depth=True,
        relative_enc=True, view_scale=1.2, rand_light=SYNFACE_RAND_LIGHT, view_mvn_path="synface-view-mvn",
        light_mvn_path="synface-light-mvn", gan_ckpt="stylegan2-synface", gan_size=128, channel_multiplier=1,
        F1_d=8, pretrain="synface-pretrain", keep_num_checkpoint=2, step2_feature_loss="discriminator"),
    "celeba_pretrain": dict(
        category="face", joint_train=True, independent=True, share_weight=True, reset_weight=False,
        save_results=False, num_stage=4, stage_len_dict=(1500, 1500, 1500), stage_len_dict2=(700, 1000, 1000),
        flip1_cfg=(False, True, True, True), flip3_cfg=_T4, collect_iters=800, batchsize=8, image_size=128,
        relative_enc=True, view_scale=1.2, view_mvn_path="celeba-view-mvn", light_mvn_path="celeba-light-mvn",
        gan_ckpt="stylegan2-celeba", gan_size=128, channel_multiplier=1, F1_d=2, num_gpus_official=8,
        step2_feature_loss="discriminator"),
    "cat_pretrain": dict(
        category="cat", joint_train=True, independent=True, share_weight=True, reset_weight=False,
        save_results=False, num_stage=4, stage_len_dict=(1500, 1500, 1500), stage_len_dict2=(700, 1000, 1000),
        flip1_cfg=(False, True, True, True), flip3_cfg=_T4, collect_iters=800, batchsize=8, image_size=128,
        crop=170, crop_reference_size=256, relative_enc=True, view_scale=1.2, view_mvn_path="cat-view-mvn",
        light_mvn_path="cat-light-mvn", gan_ckpt="stylegan2-catface", gan_size=256, channel_multiplier=1, F1_d=2,
        num_gpus_official=8,
        step2_feature_loss="discriminator"),
    "synface_pretrain": dict(
        category="synface", joint_train=True, independent=True, share_weight=True, reset_weight=False,
        save_results=False, num_stage=8, stage_len_dict=(1500, 1500, 1500), stage_len_dict2=(700, 1000, 1000),
        flip1_cfg=(False,) + (True,) * 7, flip3_cfg=(True,) * 8, collect_iters=1000, batchsize=12,
        image_size=64, crop=170, crop_reference_size=256, load_gt_depth=True, relative_enc=True, view_scale=1.2,
        rand_light=SYNFACE_RAND_LIGHT, view_mvn_path="synface-view-mvn", light_mvn_path="synface-light-mvn",
        gan_ckpt="stylegan2-synface", gan_size=128, channel_multiplier=1, F1_d=8, save_checkpoint_freq=2000,
        keep_num_checkpoint=10, num_gpus_official=8, step2_feature_loss="discriminator"),
    # The embedded model: 64² compact StyleGAN2 (weights/default/generator.pt, with its own small
    # discriminator for the step-2 feature loss), slimmer 3D nets and a schedule sized for about
    # 5 minutes per image on a 2-core CPU (docs/cpu-cost.md; 1-6 % of the official iterations).
    # net_width 0.5: 10.9 M instead of 43.4 M parameters in D+A+V+L; their forward+backward at batch 8,
    # 64², measured 1.7-3.4 s vs 9.3-17 s at width 1 on this (shared, loaded) 2-core CPU.
    # Ellipsoid fit (measured on a held-out head at 64², width 0.5): the depth noise it leaves decides the
    # normals (a pixel spans 0.0027 at depth 1). MAD of D's output against the ellipsoid: 200 iterations
    # at lr 1e-4: 22.7°; 600 at 1e-4: 7.5°; 300 at 3e-4: 7.5° (identical maps: 6°).
    # Renderer quirks off: the category is rendered at the pixel centres, and the official 2× supersampling
    # + half-pixel offset alone turn its exact canonical depth into SIDE 0.56 / MAD 17.9° (40 heads, zero
    # view; both off: exact). Prior relief: the ellipsoid of the mask's box with near 0.98 (official
    # 0.91) scores SIDE 1.60 / MAD 39.1° on 100 training renders (0.91: 2.90 / 51.1°; 0.99: 1.55 / 37.3°).
    # V and L taught the category's views and lights (`engine train-views --set view_light_width=0.25`,
    # weights/default/views-lights.pth, 3.5 MB) and kept out of step 3; the ellipsoid fitted to the object
    # as V's view of the input sees it, the canonical background flat (prior_frame "input_object"); every
    # bank sample projected on its own with the pose term (docs/default-model.md items 11-14). On 30
    # held-out renders (562k generator) against the method's own V and L: SIDE 1.668 / MAD 37.76° (1.587 /
    # 40.24°), yaw error 3.54° (24.67°), light direction 12.73° (32.27°); 130 s per image instead of 46 s.
    # 20 Adam steps per projection instead of 40 (item 14): 1.599 / 35.78° on the same images, 111 s.
    # No weight decay (official 5e-4, coupled into Adam; item 15): it flattened D's relief in step 3 with
    # this generator's bank (with the known-shape test's ideal generator it helps, so that test keeps it).
    # 1.414 / 37.04° on the same images, depth agreement with the truth 0.489 (0.404; the ellipsoid 0.480).
    # Step 3 three times longer (120 and 75 iterations instead of 40 and 25; item 16): without decay the
    # longer fit no longer flattens the relief. 1.387 / 35.79°, agreement 0.509; 113 s per image (90 s).
    # The canonical maps in the input's own frame (view_frame "input", item 20): V's reading of the input
    # becomes the frame every view and light is re-expressed in, so the input is reconstructed without a
    # turned rasterization and its prior is fitted where it is. 1.238 / 33.12° on the same images (better on
    # 23 of 30 by each metric), 107 s per image.
    # D taught the category's depth (`engine train-views --teach depth --keep-pretrain`, item 21) replaces the
    # ellipsoid fit: weights/default/pretrain.pth holds it with the V and L above. Step 3 back at 40 and 25
    # iterations: from this start a longer step 3 only loses SIDE (0.943 / 25.54°, 96 s per image). 0.888 /
    # 25.27° on the same images (MAD / prior 0.679, the first target met), 69 s per image.
    # Learning rate 3e-5 (official 1e-4; item 22): the steps move the taught start less and gain on it.
    # 0.810 / 24.49° on the same images (better on 25 / 22 of 30), 68 s per image. Then D taught longer (14000
    # cosine-scheduled steps on 16000 renders instead of 3000 constant ones on 8000) and lr 1e-5, which beat
    # 3e-5 and 3e-6 from a 7000-step D on the first 10 images (item 22): 0.618 / 20.19° on the same images
    # (better than session 18's preset on all 30; MAD / prior 0.543), 72 s per image. Then D taught with a
    # normal-angle term beside its SIDE term (`--normal-weight 0.01`, item 23): 0.563 / 14.94° on the same
    # images (MAD better on all 30; MAD / average GT 0.486, the second target met), 69 s per image.
    # The result's depth averaged with D's mirrored reading of the mirrored input (depth_mirror_average, item
    # 24): 0.546 / 14.12° on the same images (better on 22 / 25 of 30), one more forward of D. Then D with skips
    # from its encoder to its decoder (depth_skips, item 24), taught as before on 24000 renders: 0.509 / 12.35°
    # (better than session 20's preset on 23 / 29 of 30; MAD / average GT 0.402, MAD / prior 0.332), 72 s per image.
    # The result's depth also averaged over the input moved by up to one pixel (depth_shift_average, item 26), and
    # D's depth not clamped at the outer two columns (border_clamp_factor 0, official 1.02), where the clamp
    # overwrote the object in 27 of 200 held-out renders.
    "default": dict(
        category="object", num_stage=2, stage_len_dict=(150, 20, 40), stage_len_dict2=(50, 10, 25),
        flip1_cfg=(False, False), flip3_cfg=(True, False), collect_iters=6, collect_iters2=4, batchsize=8,
        image_size=64, relative_enc=True, view_scale=1.2, gan_ckpt="default", gan_size=64,
        view_mvn_path="default-view-mvn", light_mvn_path="default-light-mvn", raster_supersample=False,
        raster_half_pixel=False, prior_near=0.98,
        channel_multiplier=1, F1_d=2, prior_fit_iters=300, prior_fit_lr=3e-4, net_width=0.5,
        step2_feature_loss="discriminator", projector=dict(iters=150),
        pretrain="default-pretrain", view_light_width=0.25, prior_frame="input_object",
        step3_nets=("netD", "netA"), projection="optimize", projection_iters=20, lam_proj_pose=10.0,
        weight_decay=0.0, view_frame="input", lr=1e-5, depth_mirror_average=True, depth_skips=True,
        depth_shift_average=1, border_clamp_factor=0.0),
    # Smoke runs only: every code path once or twice, at the smallest sizes.
    "fast": dict(
        category="object", num_stage=1, stage_len_dict=(2, 2, 2), stage_len_dict2=(1, 1, 1),
        flip1_cfg=(False,), flip3_cfg=(True,), collect_iters=2, batchsize=2, image_size=64,
        relative_enc=True, view_scale=1.2, gan_ckpt="default", gan_size=64, channel_multiplier=1, F1_d=2,
        view_mvn_path="default-view-mvn", light_mvn_path="default-light-mvn",
        prior_fit_iters=2, prior_fit_lr=1e-3, net_width=0.25, step2_feature_loss="discriminator",
        projector=dict(iters=3, mean_samples=256)),
}


def crop_reference(cfg: Config) -> int:
    return cfg.crop_reference_size or cfg.gan_size


def crop_fraction(cfg: Config) -> float | None:
    """The centre crop as a fraction of the image side (None: no crop), same for input and GAN image."""
    return None if cfg.crop is None else cfg.crop / crop_reference(cfg)


def preset_names() -> list[str]:
    return list(PRESETS)


@dataclass(frozen=True)
class Phase:
    """One block of the run: `iterations` optimizer steps (or no-grad batches for "collect")."""

    stage: int
    step: str  # "prior" | "step1" | "step2" | "collect" | "step3"
    iterations: int
    nets: tuple[str, ...]  # networks optimised in this phase
    flip1: bool
    flip3: bool
    bank_size: int  # projected samples in the bank (collect: produced; step3: used), else 0


def schedule(cfg: Config, num_images: int = 1) -> list[Phase]:
    """The whole run of one target (or of a joint pre-training over `num_images` images) as phases."""
    phases = []
    if cfg.pretrain is None and cfg.prior_fit_iters > 0:
        phases.append(Phase(0, "prior", cfg.prior_fit_iters, ("netD",), False, False, 0))
    for k in range(cfg.num_stage):
        n1, n2, n3 = cfg.stage_len_dict if k == 0 else cfg.stage_len_dict2
        collect = cfg.collect_iters if k == 0 or cfg.collect_iters2 is None else cfg.collect_iters2
        per_image = collect // num_images if cfg.joint_train else collect
        bank = per_image * cfg.batchsize
        f1, f3 = cfg.flip1_cfg[k], cfg.flip3_cfg[k]
        phases.append(Phase(k, "step1", n1, ("netA",), f1, False, 0))
        if cfg.projection == "encoder":
            phases.append(Phase(k, "step2", n2, ("netEnc",), False, False, 0))
        phases += [Phase(k, "collect", collect, (), False, False, bank),
                   Phase(k, "step3", n3, cfg.step3_nets, f1, f3, bank)]
    return phases


# ----------------------------------------------------------------------------------------------
# Loading, overriding and checking


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotation `tp` (TOML-level types) and convert lists to tuples."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise EngineError(f"config key '{key}' expects a list, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    if tp is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp) and not (tp is not bool and isinstance(value, bool)):
        return value
    raise EngineError(f"config key '{key}' expects {getattr(tp, '__name__', tp)}, got {value!r}")


def _apply(cfg: Config, updates: Mapping[str, Any], source: str) -> None:
    """Set (possibly dotted or nested-table) keys on cfg with type checks."""
    top = _fields(Config)
    for key, value in updates.items():
        if key == "projector" or key.startswith("projector."):
            if key == "projector" and not isinstance(value, Mapping):
                raise EngineError(f"{source}: 'projector' must be a table of projector settings")
            sub = dict(value) if key == "projector" else {key.split(".", 1)[1]: value}
            pfields = _fields(ProjectorConfig)
            for pkey, pvalue in sub.items():
                if pkey not in pfields:
                    raise EngineError(f"{source}: unknown projector key '{pkey}' (known: {', '.join(pfields)})")
                setattr(cfg.projector, pkey, _coerce(f"projector.{pkey}", pvalue, pfields[pkey]))
            continue
        if key not in top or key == "preset":
            raise EngineError(f"{source}: unknown config key '{key}'")
        setattr(cfg, key, _coerce(key, value, top[key]))


def _parse_override(item: str) -> tuple[str, Any]:
    """'key=value': the value is read as a TOML value (1, 0.5, true, [1, 2], "x"), else as a bare string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise EngineError(f"override '{item}' is not of the form key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def _check(cfg: Config) -> None:
    """Reject values the method cannot run with, naming the key."""
    def bad(key: str, why: str) -> EngineError:
        return EngineError(f"config key '{key}' {why} (got {getattr(cfg, key)!r})")

    if cfg.image_size not in (64, 128, 256):
        raise bad("image_size", "must be 64, 128 or 256")
    if cfg.num_stage < 1:
        raise bad("num_stage", "must be at least 1")
    for key in ("stage_len_dict", "stage_len_dict2"):
        lens = getattr(cfg, key)
        if len(lens) != 3 or min(lens) < 0:
            raise bad(key, "must be three non-negative iteration counts (step1, step2, step3)")
        if lens[0] < 1:  # step 1's last forward is what the pseudo samples are shaded from
            raise bad(key, "needs at least one step-1 iteration (the pseudo samples start from its output)")
    for key in ("flip1_cfg", "flip3_cfg"):
        if len(getattr(cfg, key)) < cfg.num_stage:
            raise bad(key, f"needs one flag per stage ({cfg.num_stage})")
    for k in range(cfg.num_stage):
        if cfg.flip1_cfg[k] and not cfg.flip3_cfg[k]:
            raise EngineError(f"stage {k}: flip1 without flip3 is not supported (spec §13.31: the official "
                              "step 3 fails on it); set flip3_cfg too")
    for key in ("batchsize", "collect_iters", "gan_size", "channel_multiplier", "z_dim", "max_input_side"):
        if getattr(cfg, key) < 1:
            raise bad(key, "must be positive")
    if cfg.collect_iters2 is not None and cfg.collect_iters2 < 1:
        raise bad("collect_iters2", "must be positive")
    if cfg.step3_warmup < 0:
        raise bad("step3_warmup", "must not be negative")
    if not 1 <= cfg.F1_d <= 8:
        raise bad("F1_d", "must be between 1 and 8 (mapping layers re-applied to the offset)")
    if len(cfg.rand_light) != 7:
        raise bad("rand_light", "must have 7 numbers [x_min, x_max, y_min, y_max, r_min, r_max, alpha]")
    if len(cfg.adam_betas) != 2:
        raise bad("adam_betas", "must have 2 numbers")
    if not cfg.min_depth < cfg.max_depth:
        raise bad("max_depth", "must exceed min_depth")
    if not 0 <= cfg.depth_shift_average <= cfg.image_size // 8:
        raise bad("depth_shift_average", f"must be between 0 and {cfg.image_size // 8} pixels")
    if not cfg.step3_nets or not set(cfg.step3_nets) <= set(STEP3_NETS):
        raise bad("step3_nets", f"must name some of {', '.join(STEP3_NETS)}")
    if cfg.prior_frame not in PRIOR_FRAMES:
        raise bad("prior_frame", f"must be one of {', '.join(PRIOR_FRAMES)}")
    if cfg.view_frame not in VIEW_FRAMES:
        raise bad("view_frame", f"must be one of {', '.join(VIEW_FRAMES)}")
    if cfg.view_frame == "input" and ("netV" in cfg.step3_nets or cfg.joint_train):
        raise bad("view_frame", '"input" needs V kept out of step 3 (step3_nets without netV) and one image per '
                                "run (no joint_train): the frame is V's reading of that image")
    if not 0 < cfg.prior_near < cfg.prior_far:
        raise bad("prior_far", "must exceed prior_near > 0")
    if cfg.prior_far - cfg.prior_near > 0.4:
        raise bad("prior_far", "must be within 0.4 (the prior sphere radius) of prior_near")
    if cfg.projection_iters < 1 or cfg.projection_lr <= 0:
        raise bad("projection_iters", "and projection_lr must be positive")
    if cfg.walk_samples < 64 or cfg.walk_steps < 1:
        raise bad("walk_samples", "must be at least 64 and walk_steps positive")
    if cfg.bank_label_iters < 1 or cfg.bank_label_lr <= 0:
        raise bad("bank_label_iters", "and bank_label_lr must be positive")
    for key in ("lr_enc", "lr_depth"):
        if getattr(cfg, key) is not None and getattr(cfg, key) <= 0:
            raise bad(key, "must be positive (or none for lr)")
    if not 0 < cfg.net_width <= 4:
        raise bad("net_width", "must be in (0, 4]")
    if cfg.view_light_width is not None and not 0 < cfg.view_light_width <= 4:
        raise bad("view_light_width", "must be in (0, 4] or none")
    if cfg.crop is not None and not 0 < cfg.crop <= crop_reference(cfg):
        raise bad("crop", f"must be in 1..{crop_reference(cfg)} (crop_reference_size, else gan_size)")
    for key, choices in (("category", CATEGORIES), ("perceptual", PERCEPTUAL_CHOICES),
                         ("step2_feature_loss", STEP2_FEATURE_LOSSES), ("mask_fallback", MASK_FALLBACKS),
                         ("projection", PROJECTIONS), ("bank_labels", BANK_LABELS),
                         ("bank_gain", BANK_GAINS)):
        if getattr(cfg, key) not in choices:
            raise bad(key, f"must be one of {', '.join(choices)}")
    p = cfg.projector
    if p.iters < 0 or p.mean_samples < 1 or p.lr <= 0 or p.start_candidates < 0:
        raise EngineError(f"projector settings out of range: {p}")


def load_config(preset: str = "default", toml_path: str | Path | None = None,
                overrides: Iterable[str] | Mapping[str, Any] = ()) -> Config:
    """Build a checked Config: preset → TOML file → overrides (later wins).

    `overrides` is a list of 'key=value' strings (CLI `--set`) or a mapping (e.g. a resolved config
    read back from result.json; its 'preset' entry is ignored).
    """
    if preset not in PRESETS:
        raise EngineError(f"unknown preset '{preset}' (known: {', '.join(PRESETS)})")
    cfg = Config(preset=preset)
    _apply(cfg, PRESETS[preset], f"preset {preset}")
    if toml_path is not None:
        try:
            data = tomllib.loads(Path(toml_path).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise EngineError(f"cannot read config file: {exc}", toml_path) from exc
        data.pop("preset", None)
        _apply(cfg, data, str(toml_path))
    if isinstance(overrides, Mapping):
        _apply(cfg, {k: v for k, v in overrides.items() if k != "preset"}, "overrides")
    else:
        for item in overrides:
            key, value = _parse_override(item)
            _apply(cfg, {key: value}, "--set")
    _check(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain JSON-able data (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))
