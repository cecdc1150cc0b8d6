"""Shared-weights group mode (§1.9): gradients averaged over ranks equal the mean of per-image gradients."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp_mp

from engine import nets
from engine.batch import average_gradients, mean_gradients

SIZE = 64


def shared_model() -> torch.nn.Module:
    """The depth net every rank starts from (same seed = DDP's broadcast of rank 0's weights), plus two
    extra parameters: one only rank 0 uses, one nobody uses."""
    torch.manual_seed(3)
    model = torch.nn.ModuleDict({"netD": nets.build_nets(SIZE, width=0.125)["netD"]})
    model.only_rank0 = torch.nn.Parameter(torch.ones(3))
    model.unused = torch.nn.Parameter(torch.ones(2))
    return model


def image_and_target(index: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + index)
    return torch.rand(1, 3, SIZE, SIZE, generator=g) * 2 - 1, 0.9 + 0.2 * torch.rand(1, SIZE, SIZE, generator=g)


def image_loss(model: torch.nn.Module, index: int) -> torch.Tensor:
    image, target = image_and_target(index)
    depth = nets.depth_from_raw(model["netD"](image)[:, 0])
    loss = (depth - target).abs().mean()
    return loss + (model.only_rank0.square().sum() if index == 0 else 0)


def _rank(rank: int, world: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    model = shared_model()
    image_loss(model, rank).backward()  # each rank holds one image of the group
    average_gradients(model.parameters())
    torch.save({n: p.grad for n, p in model.named_parameters()}, f"{out}.{rank}")
    dist.destroy_process_group()


def per_image_mean(indices) -> dict[str, torch.Tensor | None]:
    """The reference: plain autograd per image, summed and divided by hand."""
    model = shared_model()
    names = [n for n, _ in model.named_parameters()]
    total: dict[str, torch.Tensor] = {}
    for i in indices:
        grads = torch.autograd.grad(image_loss(model, i), list(model.parameters()), allow_unused=True)
        for name, g in zip(names, grads, strict=True):
            if g is not None:
                total[name] = total.get(name, 0) + g
    return {n: total[n] / len(indices) if n in total else None for n in names}


@pytest.mark.slow
def test_gloo_averaged_gradients_equal_the_mean_of_per_image_gradients(tmp_path):
    world = 2
    out = tmp_path / "grads"
    tmp_mp.spawn(_rank, args=(world, f"file://{tmp_path / 'rendezvous'}", str(out)), nprocs=world)
    expected = per_image_mean(range(world))
    assert expected["unused"] is None and expected["netD.network.0.weight"].abs().sum() > 0
    for rank in range(world):
        got = torch.load(f"{out}.{rank}", weights_only=True)
        assert got["unused"] is None  # nobody used it: the optimiser must leave it alone
        assert torch.allclose(got["only_rank0"], expected["only_rank0"])  # rank 1 contributed zeros
        for name, grad in expected.items():
            if grad is not None:
                assert torch.allclose(got[name], grad, rtol=1e-5, atol=1e-7), name


def test_single_process_emulation_gives_the_same_mean_gradient():
    expected = per_image_mean(range(3))
    model = shared_model()
    model.unused.grad = torch.ones(2)  # stale gradients from an earlier step must not leak in
    assert mean_gradients(model.parameters(), [lambda i=i: image_loss(model, i) for i in range(3)]) == 3
    got = {n: p.grad for n, p in model.named_parameters()}
    assert got["unused"] is None
    for name, grad in expected.items():
        if grad is not None:
            assert torch.allclose(got[name], grad, rtol=1e-5, atol=1e-7), name
    single = per_image_mean([0])
    assert not torch.allclose(got["netD.network.0.weight"], single["netD.network.0.weight"])  # a real average
