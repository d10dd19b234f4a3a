"""Training objectives and noise schedules, one per backbone family's pretraining recipe.

Both objectives see the network only as `net(x_in, t) -> raw output`, with latents
`(batch, latent_frames, channels, h, w)`, and expose:
- `sample_t(batch)` a training noise level per sample,
- `loss(net, x0, t, noise, frame_mask)` the per-sample pretraining loss,
- `denoised(net, x, t)` the clean-latent estimate used by the samplers,
- `prior(shape)` the starting point of sampling and `schedule(steps)` its noise levels.
The samplers that integrate them live in `actwm.models.samplers`.

`EDMObjective` (SVD): `x = x0 + sigma * eps`, preconditioning c_in = 1/sqrt(sigma^2+1),
c_skip = 1/(sigma^2+1), c_out = -sigma/sqrt(sigma^2+1) (v-prediction), log-normal training sigmas and
EDM loss weight (sigma^2+1)/sigma^2, Karras sampling schedule.
`FlowObjective` (Cosmos-Predict2, Wan): `x_t = (1 - t) x0 + t eps`, target velocity `eps - x0`,
logit-normal training times, shifted sampling schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _expand(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def _masked_mse(err: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
    """`(b, f, c, h, w)` squared errors -> `(b,)` mean over the frames where `frame_mask` `(f,)` is True."""
    per_frame = err.flatten(2).mean(-1)  # (b, f)
    if frame_mask is None:
        return per_frame.mean(1)
    m = frame_mask.to(per_frame.dtype)
    return (per_frame * m).sum(1) / m.sum()


@dataclass
class EDMObjective:
    """EDM v-prediction as SVD was trained (sigma_data = 1)."""

    p_mean: float = 0.7
    p_std: float = 1.6
    sigma_min: float = 0.002
    sigma_max: float = 700.0
    rho: float = 7.0

    name = "edm"

    def sample_t(
        self, batch: int, generator: torch.Generator | None = None, device: str | torch.device = "cpu"
    ) -> torch.Tensor:
        z = torch.randn(batch, generator=generator, device=device)
        return (self.p_mean + self.p_std * z).exp()

    def precondition(self, sigma: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        s = _expand(sigma, x)
        c_in = 1 / (s**2 + 1).sqrt()
        c_skip = 1 / (s**2 + 1)
        c_out = -s / (s**2 + 1).sqrt()
        return c_in, c_skip, c_out

    def noisy(self, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x0 + _expand(sigma, x0) * noise

    def denoised(self, net, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        c_in, c_skip, c_out = self.precondition(sigma, x)
        return c_skip * x + c_out * net(c_in * x, sigma)

    def loss(self, net, x0, sigma, noise, frame_mask=None) -> torch.Tensor:
        x = self.noisy(x0, sigma, noise)
        weight = (sigma**2 + 1) / sigma**2
        return weight * _masked_mse((self.denoised(net, x, sigma) - x0) ** 2, frame_mask)

    def schedule(self, steps: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Karras sigmas `(steps + 1,)`, from sigma_max down to 0."""
        ramp = torch.linspace(0, 1, steps, dtype=dtype)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        sigmas = (hi + ramp * (lo - hi)) ** self.rho
        return torch.cat([sigmas, torch.zeros(1, dtype=dtype)])

    def prior(self, shape, generator=None, device="cpu") -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device) * self.sigma_max


@dataclass
class FlowObjective:
    """Rectified flow / flow matching as Cosmos-Predict2 and Wan were trained."""

    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 3.0  # sampling-schedule shift (Wan uses 3-5 at 480p; 1 = uniform)

    name = "flow"

    def sample_t(
        self, batch: int, generator: torch.Generator | None = None, device: str | torch.device = "cpu"
    ) -> torch.Tensor:
        z = torch.randn(batch, generator=generator, device=device)
        return torch.sigmoid(self.logit_mean + self.logit_std * z)

    def noisy(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        s = _expand(t, x0)
        return (1 - s) * x0 + s * noise

    def denoised(self, net, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x - _expand(t, x) * net(x, t)

    def loss(self, net, x0, t, noise, frame_mask=None) -> torch.Tensor:
        v = net(self.noisy(x0, t, noise), t)
        return _masked_mse((v - (noise - x0)) ** 2, frame_mask)

    def schedule(self, steps: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Times `(steps + 1,)` from 1 to 0, shifted towards high noise by `shift`."""
        t = torch.linspace(1, 0, steps + 1, dtype=dtype)
        return self.shift * t / (1 + (self.shift - 1) * t)

    def prior(self, shape, generator=None, device="cpu") -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device)


def make_objective(name: str, **kwargs) -> EDMObjective | FlowObjective:
    if name == "edm":
        return EDMObjective(**kwargs)
    if name == "flow":
        return FlowObjective(**kwargs)
    raise ValueError(f"unknown objective {name!r}; expected 'edm' or 'flow'")


__all__ = ["EDMObjective", "FlowObjective", "make_objective"]
