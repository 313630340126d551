"""DistributedDataParallel: a tiny correlation flow network trained in two processes (gloo, CPU)
ends with the same parameters as the same steps in one process on the whole batch."""

from __future__ import annotations

import os
import socket
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

STEPS = 3
BATCH = 4  # two per rank


class TinyFlowNet(nn.Module):
    """Shared conv encoder, PWC-style correlation (md=2) with LeakyReLU, conv head to 2-channel flow."""

    def __init__(self) -> None:
        super().__init__()
        import torchcorr

        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 3, padding=1))
        self.corr = torchcorr.Correlation(max_displacement=2)
        self.head = nn.Sequential(
            nn.Conv2d(25 + 8, 16, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(16, 2, 3, padding=1)
        )

    def forward(self, im1: torch.Tensor, im2: torch.Tensor) -> torch.Tensor:
        f1, f2 = self.encoder(im1), self.encoder(im2)
        cost = nn.functional.leaky_relu(self.corr(f1, f2), 0.1)
        return self.head(torch.cat([cost, f1], 1))


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    im1 = torch.randn(STEPS, BATCH, 3, 12, 16, generator=g, dtype=torch.float64)
    im2 = torch.roll(im1, shifts=(1, -1), dims=(3, 4)) + 0.05 * torch.randn(im1.shape, generator=g, dtype=im1.dtype)
    flow = torch.randn(STEPS, BATCH, 2, 12, 16, generator=g, dtype=torch.float64)
    return im1, im2, flow


def _model() -> nn.Module:
    torch.manual_seed(0)
    return TinyFlowNet().double()


def _train(model: nn.Module, rows: slice) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    im1, im2, flow = _data()
    for step in range(STEPS):
        opt.zero_grad()
        pred = model(im1[step, rows], im2[step, rows])
        loss = (pred - flow[step, rows]).abs().mean()  # per-rank mean: DDP averages the gradients
        loss.backward()
        opt.step()


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(_model())
        per_rank = BATCH // world
        _train(model, slice(rank * per_rank, (rank + 1) * per_rank))
        if rank == 0:
            torch.save(model.module.state_dict(), os.path.join(out_dir, "ddp.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_single_process():
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_worker, args=(2, _free_port(), out_dir), nprocs=2, join=True)
        ddp_state = torch.load(os.path.join(out_dir, "ddp.pt"))
    single = _model()
    _train(single, slice(0, BATCH))
    start = _model().state_dict()
    for name, value in single.state_dict().items():
        assert not torch.equal(value, start[name]), f"{name} did not train"
        torch.testing.assert_close(ddp_state[name], value, rtol=1e-9, atol=1e-10, msg=name)
