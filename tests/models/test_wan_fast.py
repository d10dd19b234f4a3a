"""The Wan adapter's inference fast paths (actwm.models.wan_fast): same outputs as the stock diffusers modules, and
each path is really taken (recorded at the aten level), only while autograd is off."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from actwm.models.compiling import cpu_compiler_missing
from actwm.models.conditioning import Conditioning
from actwm.models.wan_fast import FastPaths
from actwm.models.world_model import TINY_PRESETS, WorldModel
from actwm.rollout.rollout import RolloutConfig, rollout
from tests.models.test_world_model import inputs, randomise_encoder

WAN = ["wan2.1", "wan2.2", "wan2.1-i2v"]


def use(wm: WorldModel, paths: FastPaths) -> None:
    for name in FastPaths.names():
        setattr(wm.adapter.fast, name, getattr(paths, name))


class Ops(TorchDispatchMode):
    """Records (op name, first input's shape, dtypes of the tensor inputs) of every aten op run under it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple, set]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        shape = tuple(tensors[0].shape) if tensors else ()
        self.calls.append((func.__name__, shape, {a.dtype for a in tensors}))
        return func(*args, **(kwargs or {}))

    def named(self, prefix: str) -> list[tuple[str, tuple, set]]:
        return [c for c in self.calls if c[0].startswith(prefix)]


def model(backbone: str) -> WorldModel:
    wm = WorldModel.from_preset(TINY_PRESETS[backbone], "nav3").eval()
    randomise_encoder(wm)
    return wm


@pytest.mark.parametrize("backbone", WAN)
def test_fast_paths_match_stock_forward_and_guided_copies(backbone):
    wm = model(backbone)
    _, actions, _, cond, noisy, t = inputs(wm)
    branches = wm.conditioning(actions)
    stacked = Conditioning.stack([branches, branches.without(["actions"])], like=branches)
    out = {}
    with torch.no_grad():
        for name, paths in (("stock", FastPaths.off()), ("fast", FastPaths())):
            use(wm, paths)
            out[name] = (wm.net(noisy, t, cond, branches), wm.net(noisy, t, cond.repeat(2), stacked, copies=2))
    assert (out["fast"][1][:2] - out["fast"][1][2:]).abs().max() > 1e-3  # the two passes differ (actions matter)
    for fast, stock in zip(out["fast"], out["stock"]):
        torch.testing.assert_close(fast, stock, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FastPaths.names())
def test_each_fast_path_alone_matches_stock(name):
    wm = model("wan2.1-i2v")
    _, actions, _, cond, noisy, t = inputs(wm)
    branches = wm.conditioning(actions)
    stacked = Conditioning.stack([branches, branches.without(["actions"])], like=branches)
    with torch.no_grad():
        use(wm, FastPaths.off())
        stock = wm.net(noisy, t, cond.repeat(2), stacked, copies=2)
        use(wm, FastPaths(**{n: n == name for n in FastPaths.names()}))
        fast = wm.net(noisy, t, cond.repeat(2), stacked, copies=2)
    torch.testing.assert_close(fast, stock, rtol=1e-5, atol=1e-5)


def test_fast_paths_are_taken_while_sampling():
    """Per-frame modulation rows reach the blocks, no float64 rope, no query projection or attention for the
    single-key cross-attention, one patch embedding for two guided copies, rope tables built once."""
    wm = model("wan2.1-i2v")
    _, actions, _, cond, noisy, t = inputs(wm)
    branches = wm.conditioning(actions)
    stacked = Conditioning.stack([branches, branches.without(["actions"])], like=branches)
    temb_rows = []
    for block in wm.adapter.backbone.blocks:
        block.register_forward_pre_hook(lambda m, args: temb_rows.append(args[2].shape[1]))
    b, f = noisy.shape[:2]
    with torch.no_grad(), Ops() as ops:
        wm.net(noisy, t, cond, branches)
        wm.net(noisy, t, cond.repeat(2), stacked, copies=2)
    assert temb_rows == [f] * (2 * len(wm.adapter.backbone.blocks))
    assert not [c for c in ops.calls if torch.float64 in c[2]]
    convs = ops.named("convolution")
    assert [c[1][0] for c in convs if len(c[1]) == 5] == [b, b]  # batch 2b embedded as b, then repeated
    attention = ops.named("_scaled_dot_product")
    assert len(attention) == 2 * len(wm.adapter.backbone.blocks)  # self-attention only
    assert len(wm.adapter.backbone.rope.__dict__["_tables"]) == 1


def test_training_forward_is_stock_and_trains_every_projection():
    """With autograd on the fast paths stand aside: bit-identical to stock, and the cross-attention's query
    projection gets its (zero) gradient as before."""
    wm = model("wan2.1-i2v").train()
    _, actions, _, cond, noisy, t = inputs(wm)
    out = {}
    for name, paths in (("stock", FastPaths.off()), ("fast", FastPaths())):
        use(wm, paths)
        wm.zero_grad(set_to_none=True)
        y = wm(noisy, t, cond, actions)
        y.square().mean().backward()
        out[name] = (y.detach(), wm.adapter.backbone.blocks[0].attn2.to_q.weight.grad)
    assert torch.equal(out["fast"][0], out["stock"][0])
    assert out["fast"][1] is not None


def test_multi_token_context_takes_the_stock_cross_attention():
    wm = model("wan2.1")
    wm.adapter.text_context = torch.randn(1, 3, wm.adapter.text_context.shape[-1])
    _, actions, _, cond, noisy, t = inputs(wm)
    with torch.no_grad():
        fast = wm(noisy, t, cond, actions)
        use(wm, FastPaths.off())
        stock = wm(noisy, t, cond, actions)
    torch.testing.assert_close(fast, stock, rtol=1e-5, atol=1e-5)


def test_guided_rollout_matches_stock():
    wm = model("wan2.1-i2v")
    first = torch.rand(1, 3, 32, 32) * 2 - 1
    raw = torch.randn(2, 9, 3) * 0.1
    cfg = RolloutConfig(steps=3, guidance=2.0, guidance_interval=(0.3, 1.0))
    fast = rollout(wm, first, raw, cfg=cfg)
    use(wm, FastPaths.off())
    torch.testing.assert_close(fast, rollout(wm, first, raw, cfg=cfg), rtol=1e-5, atol=1e-5)


def test_training_paths_act_under_autograd_with_stock_gradients():
    """`FastPaths.training` (TrainConfig.fast_paths): with autograd on, `single_key` and `frame_modulation` act (no
    cross-attention SDPA, per-frame modulation rows), the other paths stay stock (no cached rope tables), and the
    output and every gradient match stock; the skipped query/key parameters get an exact zero gradient, not None."""
    wm = model("wan2.1").train()
    _, actions, _, cond, noisy, t = inputs(wm)
    temb_rows = []
    for block in wm.adapter.backbone.blocks:
        block.register_forward_pre_hook(lambda m, args: temb_rows.append(args[2].shape[1]))
    out = {}
    for name, training in (("stock", False), ("fast", True)):
        wm.adapter.fast.training = training
        wm.zero_grad(set_to_none=True)
        temb_rows.clear()
        with Ops() as ops:
            y = wm(noisy, t, cond, actions)
            y.square().mean().backward()
        grads = {n: p.grad for n, p in wm.named_parameters() if p.requires_grad}
        out[name] = (y.detach(), grads, list(temb_rows), len(ops.named("_scaled_dot_product")))
    blocks = len(wm.adapter.backbone.blocks)
    assert out["fast"][2] == [noisy.shape[1]] * blocks and out["stock"][2] != out["fast"][2]
    assert out["fast"][3] < out["stock"][3]  # the one-key cross-attention's forward and backward are gone
    assert "_tables" not in wm.adapter.backbone.rope.__dict__  # fast_rope is an inference path only
    torch.testing.assert_close(out["fast"][0], out["stock"][0], rtol=1e-5, atol=1e-6)
    for n, stock in out["stock"][1].items():
        fast = out["fast"][1][n]
        assert (fast is None) == (stock is None), n
        if stock is not None:
            torch.testing.assert_close(fast, stock, rtol=1e-4, atol=1e-7, msg=n)
    q = out["fast"][1]["adapter.backbone.blocks.0.attn2.to_q.weight"]
    assert q is not None and not q.any()


@pytest.mark.skipif(cpu_compiler_missing() is not None, reason="torch.compile's CPU backend needs a C++ compiler")
def test_training_paths_compiled_under_bf16_autocast_give_finite_stock_gradients():
    """TrainConfig.fast_paths with compile under bf16 autocast: inductor's CPU kernels gave NaN gradients (the first
    block's layer-norm backward reading the channel-major patch embedding); the token-major patch embedding fixes it.
    Every gradient is finite and matches the eager bf16 one to bf16 rounding."""
    torch._dynamo.reset()
    wm = model("wan2.1").train()
    wm.adapter.fast.training = True
    _, actions, _, cond, noisy, _ = inputs(wm, batch=8)
    t = torch.linspace(0.1, 0.9, 8)
    grads = {}
    for name in ("eager", "compiled"):
        wm.zero_grad(set_to_none=True)
        if name == "compiled":
            wm.adapter.backbone.compile()  # in place, as TrainConfig.compile does
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = wm(noisy, t, cond, actions)
        y.float().square().mean().backward()
        grads[name] = {n: p.grad.float() for n, p in wm.named_parameters() if p.grad is not None}
    bad = [n for n, g in grads["compiled"].items() if not torch.isfinite(g).all()]
    assert not bad, f"non-finite gradients: {bad}"
    for n, g in grads["eager"].items():
        scale = g.abs().max().clamp(min=1e-6)
        assert ((grads["compiled"][n] - g).abs().max() / scale) < 0.1, n
