"""The EgoWM action-injection contract, on tiny configs of the real diffusers backbones."""

import json

import pytest
import torch

from actwm.models.world_model import TINY_PRESETS, WorldModel, get_preset
from tests.conftest import BACKBONES


def make(backbone, action_space="nav3", **kw):
    return WorldModel.from_preset(TINY_PRESETS[backbone], action_space, **kw).eval()


def frames_for(wm, n=2):
    k = wm.codec.temporal_compression
    return 1 + k * n if k > 1 else 1 + n * 2


def inputs(wm, batch=2, size=32, dim=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    t_frames = frames_for(wm)
    video = torch.rand(batch, t_frames, 3, size, size, generator=g) * 2 - 1
    actions = torch.randn(batch, t_frames, dim, generator=g)
    x0 = wm.encode(video)
    cond = wm.condition(video[:, 0], x0[:, 0], frames=t_frames)
    noisy = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0.4, 0.8][:batch]) if wm.objective.name == "flow" else torch.tensor([0.5, 4.0][:batch])
    return video, actions, x0, cond, noisy, t


def randomise_encoder(wm, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in wm.encoder.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_identical_to_bare_backbone_at_init(backbone):
    wm = make(backbone)
    _, actions, _, cond, noisy, t = inputs(wm)
    with torch.no_grad():
        wrapped = wm(noisy, t, cond, actions)
        bare = wm.forward_bare(noisy, t, cond)
    assert torch.equal(wrapped, bare)
    assert wrapped.abs().sum() > 0


@pytest.mark.parametrize("backbone", BACKBONES)
def test_changing_one_frames_action_changes_that_frame_most(backbone):
    wm = make(backbone)
    randomise_encoder(wm)
    _, actions, _, cond, noisy, t = inputs(wm)
    k = wm.codec.temporal_compression
    f = wm.codec.latent_shape(actions.shape[1], 32, 32)[0]
    target = f - 1  # last latent frame: pixel frames 1 + k*(f-2) .. k*(f-1)
    changed = actions.clone()
    changed[:, 1 + k * (target - 1) : 1 + k * target] += 3.0
    with torch.no_grad():
        base = wm(noisy, t, cond, actions)
        moved = wm(noisy, t, cond, changed)
    per_frame = (moved - base).abs().flatten(2).mean(-1).mean(0)  # (latent_frames,)
    assert per_frame[target] > 0
    assert int(per_frame.argmax()) == target, per_frame


@pytest.mark.parametrize("backbone", BACKBONES)
def test_gradients_reach_encoder_and_lora(backbone):
    wm = make(backbone, train_mode="lora", lora_rank=4)
    randomise_encoder(wm)
    with torch.no_grad():  # peft zero-initialises lora_B; make the A branch receive gradient too
        for name, p in wm.adapter.backbone.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    video, actions, *_ = inputs(wm)
    wm.train()
    loss = wm.loss(video, actions, generator=torch.Generator().manual_seed(0))
    loss.backward()
    enc = [p for p in wm.encoder.parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc)
    lora = [(n, p) for n, p in wm.adapter.backbone.named_parameters() if "lora_" in n]
    assert lora, "no LoRA weights were injected"
    assert all(p.requires_grad for _, p in lora)
    assert sum(p.grad.abs().sum() for _, p in lora if p.grad is not None) > 0
    frozen = [p for n, p in wm.adapter.backbone.named_parameters() if "lora_" not in n]
    assert all(not p.requires_grad for p in frozen)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_save_load_round_trip(backbone, tmp_path):
    wm = make(backbone)
    randomise_encoder(wm)
    wm.save(tmp_path / "ckpt")
    loaded = WorldModel.load(tmp_path / "ckpt").eval()
    _, actions, _, cond, noisy, t = inputs(wm)
    with torch.no_grad():
        assert torch.equal(wm(noisy, t, cond, actions), loaded(noisy, t, cond, actions))
    video = torch.rand(1, actions.shape[1], 3, 32, 32) * 2 - 1
    with torch.no_grad():  # conditioning (incl. SVD's tiny CLIP tower) survives the round trip too
        c1, c2 = wm.condition(video[:, 0], frames=video.shape[1]), loaded.condition(video[:, 0], frames=video.shape[1])
    assert all(torch.equal(v, c2.tensors()[k]) for k, v in c1.tensors().items())


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("space", ["nav3", "ee7", "humanoid25"])
def test_action_dimensions(backbone, space):
    """Every action dimension reaches the embedding, and the embedding reaches the output (values, not shapes)."""
    wm = make(backbone, space)
    randomise_encoder(wm)
    dim = wm.action_space.dim
    _, actions, _, cond, noisy, t = inputs(wm, dim=dim)
    with torch.no_grad():
        base = wm.embed_actions(actions)
        for d in range(dim):
            moved = actions.clone()
            moved[..., d] += 1.0
            assert (wm.embed_actions(moved) - base).abs().max() > 1e-4, f"{space}: action dimension {d} is unused"
        out, bare = wm(noisy, t, cond, actions), wm.forward_bare(noisy, t, cond)
    assert out.shape == noisy.shape
    assert (out - bare).abs().max() > 1e-3


def test_state_embedding_changes_output():
    wm = make("wan2.1", "humanoid25", encoder={"state_dim": 25})
    randomise_encoder(wm)
    _, actions, _, cond, noisy, t = inputs(wm, dim=25)
    s1, s2 = torch.zeros(2, 25), torch.ones(2, 25)
    with torch.no_grad():
        assert not torch.equal(wm(noisy, t, cond, actions, s1), wm(noisy, t, cond, actions, s2))
    with pytest.raises(ValueError, match="state"):
        wm(noisy, t, cond, actions)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_bad_input_errors(backbone):
    wm = make(backbone)
    _, actions, _, cond, noisy, t = inputs(wm)
    with pytest.raises(ValueError, match="dimension"):
        wm(noisy, t, cond, torch.randn(actions.shape[0], actions.shape[1], 5))
    bad = actions.clone()
    bad[0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        wm(noisy, t, cond, bad)
    bad[0, 1, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        wm(noisy, t, cond, bad)
    k = wm.codec.temporal_compression
    if k > 1:
        with pytest.raises(ValueError, match=r"1 \+ 4\*n"):
            wm(noisy, t, cond, actions[:, :-1])
    longer = torch.cat([actions, actions[:, -k:] if k > 1 else actions[:, -1:]], dim=1)
    with pytest.raises(ValueError, match="disagree"):
        wm(noisy, t, cond, longer)


def test_unknown_preset_and_missing_weights_dir(tmp_path):
    with pytest.raises(ValueError, match="unknown world-model preset"):
        get_preset("svd-huge")
    with pytest.raises(ValueError, match="does not exist"):
        WorldModel.from_pretrained(str(tmp_path / "nowhere"), backbone="wan2.1")
    with pytest.raises(ValueError, match="not a world-model checkpoint|does not exist"):
        WorldModel.load(tmp_path / "nowhere")


def test_checkpoint_from_other_backbone_or_action_space(tmp_path):
    wm = make("wan2.1")
    wm.save(tmp_path / "c")
    with pytest.raises(ValueError, match="backbone 'wan2.1', expected 'cosmos'"):
        WorldModel.load(tmp_path / "c", backbone="cosmos")
    with pytest.raises(ValueError, match="action space 'nav3'"):
        WorldModel.load(tmp_path / "c", action_space="ee7")


@pytest.mark.parametrize("backbone", ["svd", "wan2.1-i2v"])
def test_guidance_extrapolates_from_the_action_free_prediction(backbone):
    """One Euler step is linear in the network output, so guided latents = uncond + g * (cond - uncond);
    guidance 0 is the zero-action-embedding prediction. An interval that excludes the step's noise level
    switches guidance off."""
    wm = make(backbone)
    randomise_encoder(wm)
    video, actions, *_ = inputs(wm, batch=1)
    gen = lambda **kw: wm.generate(video[:, 0], actions, steps=1, seeds=[3], return_latents=True, **kw)  # noqa: E731
    with torch.no_grad():
        cond, uncond, guided = gen(), gen(guidance=0.0), gen(guidance=2.5)
        top = float(wm.objective.schedule(1)[0])  # the one step's noise level
        inside = gen(guidance=2.5, guidance_interval=(0.0, top))
        outside = gen(guidance=2.5, guidance_interval=(top, top + 1.0))
    assert (cond - uncond).abs().max() > 0.1  # the actions matter, well above the tolerance below
    torch.testing.assert_close(guided, uncond + 2.5 * (cond - uncond), rtol=1e-3, atol=2e-3)
    torch.testing.assert_close(inside, guided)
    torch.testing.assert_close(outside, cond)
    with pytest.raises(ValueError, match="guidance_interval"):
        gen(guidance=2.0, guidance_interval=(0.5, 0.5))


def test_saving_the_same_model_gives_the_same_bytes(tmp_path):
    """Checkpoints are reproducible files: saving the same weights again (safetensors writes its metadata in
    hash-map order) gives byte-identical weights and config, so `weights_sha256` and fingerprints repeat."""
    wm = make("wan2.1")
    saved = {(d / "model.safetensors").read_bytes() for d in (wm.save(tmp_path / f"c{i}") for i in range(8))}
    configs = {(tmp_path / f"c{i}" / "config.json").read_bytes() for i in range(8)}
    assert len(saved) == 1 and len(configs) == 1


def test_checkpoint_integrity_errors_name_the_file(tmp_path):
    """A bit-flipped tensor, a truncated or empty weights file and another backbone's checkpoint are ValueErrors
    naming the weights file, never silently wrong frames."""
    wm = make("wan2.1")
    randomise_encoder(wm)
    ckpt = wm.save(tmp_path / "c")
    assert len(json.loads((ckpt / "config.json").read_text())["weights_sha256"]) == 64
    weights = ckpt / "model.safetensors"
    good = weights.read_bytes()
    flipped = bytearray(good)
    flipped[-10] ^= 0x01  # a bit in the last tensor's data: still a valid safetensors file
    weights.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"model\.safetensors: weights are corrupted"):
        WorldModel.load(ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    del config["weights_sha256"]  # without a recorded checksum: the unreadable files still fail clearly
    (ckpt / "config.json").write_text(json.dumps(config))
    for broken in (good[: len(good) // 2], b""):
        weights.write_bytes(broken)
        with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
            WorldModel.load(ckpt)
    other = make("cosmos").save(tmp_path / "other")  # another backbone's weights under this config
    weights.write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"model\.safetensors: weights (are for another model|do not match)"):
        WorldModel.load(ckpt)
    narrow = make("wan2.1", encoder={"hidden_dim": 32}).save(tmp_path / "narrow")  # same names, other sizes
    weights.write_bytes((narrow / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"model\.safetensors: weights are for another model \(shape mismatch"):
        WorldModel.load(ckpt)
    weights.write_bytes(good)
    assert torch.equal(next(iter(WorldModel.load(ckpt).encoder.parameters())), next(iter(wm.encoder.parameters())))


def test_loss_accepts_a_batch():
    """wm.loss(Batch) == wm.loss(video, actions, state) with the same noise; a Batch's state reaches the state
    embedding only when the model has one."""
    from actwm.batch import Batch

    wm = make("wan2.1", "humanoid25", encoder={"state_dim": 25})
    randomise_encoder(wm)
    video, actions, *_ = inputs(wm, dim=25)
    state = torch.randn(2, video.shape[1], 25)
    batch = Batch(video=video, actions=actions, state=state)
    with torch.no_grad():
        via_batch = wm.loss(batch, generator=torch.Generator().manual_seed(7), action_dropout=0.5)
        direct = wm.loss(video, actions, state[:, 0], generator=torch.Generator().manual_seed(7), action_dropout=0.5)
        other = wm.loss(video, actions, state[:, 1], generator=torch.Generator().manual_seed(7), action_dropout=0.5)
    assert torch.equal(via_batch, direct) and not torch.equal(via_batch, other)
    plain = make("wan2.1", "humanoid25")  # no state embedding: the Batch's state is not used
    with torch.no_grad():
        a = plain.loss(batch, generator=torch.Generator().manual_seed(7))
        b = plain.loss(video, actions, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="come from the Batch"):
        wm.loss(batch, actions)
