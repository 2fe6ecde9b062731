"""Checks shared by the tests of the methods with an EMA target (BYOL, PGL, DrasCLR)."""

import torch


def train(model, batch, steps, lr=1e-3):
    """``steps`` Adam steps on one batch; the losses."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        out = model(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    return losses


def check_ema_target(model, batch, online, target, momentum):
    """After one forward and backward pass: a kernel of ``target`` is
    ``momentum * target + (1 - momentum) * online`` (made to differ first), and no
    parameter of ``target`` got a gradient."""
    key = next(k for k, v in online.state_dict().items() if v.dim() >= 2)
    with torch.no_grad():
        online.state_dict()[key].add_(1.0)
    before_online = online.state_dict()[key].clone()
    before_target = target.state_dict()[key].clone()
    out = model(batch)
    out["loss"].backward()
    expected = momentum * before_target + (1 - momentum) * before_online
    assert torch.allclose(target.state_dict()[key], expected)
    assert all(p.grad is None for p in target.parameters())
    return out
