"""The local SGD step equals torch.optim.SGD bit for bit (with and without momentum, and after a reset)."""

import pytest
import torch

from actors.local_training import LocalSGD


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_local_sgd_matches_torch_sgd_exactly(momentum):
    gen = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (7,), (2, 2, 2)]
    ours = [torch.randn(s, generator=gen, requires_grad=True) for s in shapes]
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    a = LocalSGD(ours, lr=0.37, momentum=momentum)
    b = torch.optim.SGD(theirs, lr=0.37, momentum=momentum)
    for step in range(6):
        if step == 3:  # a new client: momentum starts again
            a.state.clear()
            b.state.clear()
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = g.clone(), g.clone()
        ours[1].grad = theirs[1].grad = None if step == 4 else ours[1].grad  # a parameter without a gradient
        a.step()
        b.step()
        for p, q in zip(ours, theirs):
            assert torch.equal(p, q)
    a.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in ours)
