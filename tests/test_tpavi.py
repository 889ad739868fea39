"""TPAVI: sizes, official checkpoint layout, the TPAVI block maths, decoder quirks, AVSS behaviour."""

from __future__ import annotations

import logging

import pytest
import torch
from official_layouts import meta_state_dict, random_state_dict, read_layout

import backbones
from backbones.encoders.pvt import to_official_pvt_keys
from backbones.losses import LOSS_TERMS
from backbones.tpavi import TPAVI, ResidualConvUnit, TPAVIBlock


def n_params_without_vggish(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("vggish."))


def clip(batch: int = 1, frames: int = 5, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, frames, 3, size, size, generator=gen),
        torch.randn(batch, frames, 1, 96, 64, generator=gen),
    )


@pytest.mark.parametrize(
    ("visual_encoder", "expected"),
    [("pvt_v2_b5", 101_320_577), ("resnet50", 69_337_857)],  # original Pred_endecoder (R50 without its dead branch)
)
def test_full_parameter_count(visual_encoder: str, expected: int) -> None:
    with torch.device("meta"):
        model = backbones.create("tpavi", visual_encoder=visual_encoder)
    assert n_params_without_vggish(model) == expected


@pytest.mark.parametrize(
    ("layout_file", "kwargs", "count"),
    [
        ("tpavi_pvt_v2_b5.tsv", {}, 1190),  # the released checkpoint: 1190 tensors
        ("tpavi_pvt_v2_b5_avss.tsv", {"dataset": "avss"}, 1186),  # align_channel without bias
        ("tpavi_resnet50.tsv", {"visual_encoder": "resnet50"}, 630),
    ],
)
def test_full_official_layout_loads_strictly(layout_file: str, kwargs: dict, count: int) -> None:
    layout = read_layout(layout_file)
    assert len(layout) == count
    with torch.device("meta"):
        model = backbones.create("tpavi", **kwargs)
    # raises on any unmapped, missing or mis-shaped key (a layout check: VGGish may stay random)
    model.load_official(meta_state_dict(layout), allow_random_vggish=True)


def tiny_official_state(model: TPAVI, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the original TPAVI-PVT names, at the tiny model's shapes."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("vggish.")}
    encoder = {k[len("visual_encoder.") :]: v for k, v in own.items() if k.startswith("visual_encoder.")}
    official = {f"encoder_backbone.{k}": v for k, v in to_official_pvt_keys(encoder).items()}
    official.update({k: v for k, v in own.items() if not k.startswith("visual_encoder.")})
    return random_state_dict(official, seed)


def test_official_values_land_and_bad_keys_are_named() -> None:
    model = backbones.create("tpavi", preset="tiny")
    model.vggish.load_official(model.vggish.state_dict())  # as pretrained_vggish=... would
    vggish_before = model.vggish.features[0].weight.clone()
    state = tiny_official_state(model)
    model.load_official({f"module.{k}": v for k, v in state.items()})
    assert torch.equal(
        model.visual_encoder.stages[2].blocks[0].attn.kv.weight,
        state["encoder_backbone.block3.0.attn.kv.weight"],
    )
    assert torch.equal(model.conv3.conv2d_list[2].weight, state["conv3.conv2d_list.2.weight"])
    assert torch.equal(model.tpavi_b2.W_z[1].running_var, state["tpavi_b2.W_z.1.running_var"])
    assert torch.equal(model.tpavi_b4.align_channel.bias, state["tpavi_b4.align_channel.bias"])
    assert torch.equal(model.path1.resConfUnit2.conv1.weight, state["path1.resConfUnit2.conv1.weight"])
    assert torch.equal(model.output_conv[4].weight, state["output_conv.4.weight"])
    assert torch.equal(model.vggish.features[0].weight, vggish_before)  # not in TPAVI checkpoints

    with pytest.raises(KeyError, match="tpavi_b5.theta.weight"):
        model.load_official({**state, "tpavi_b5.theta.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="encoder_backbone.block9.0.norm1.weight"):
        model.load_official({**state, "encoder_backbone.block9.0.norm1.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="output_conv.2.bias"):
        model.load_official({k: v for k, v in state.items() if k != "output_conv.2.bias"})
    bad = dict(state, **{"output_conv.4.weight": torch.zeros(71, 8, 1, 1)})
    with pytest.raises(ValueError, match=r"output_conv\.4\.weight.*\(71, 8, 1, 1\).*\(1, 8, 1, 1\)"):
        model.load_official(bad)


def test_resnet_checkpoint_drops_dead_branch_with_log(caplog) -> None:
    with torch.device("meta"):
        model = backbones.create("tpavi", visual_encoder="resnet50")
    with caplog.at_level(logging.INFO):
        model.load_official(meta_state_dict(read_layout("tpavi_resnet50.tsv")), allow_random_vggish=True)
    assert "dropped 174 tensors" in caplog.text


def test_official_checkpoint_over_a_random_vggish_is_refused() -> None:
    """TPAVI checkpoints hold no VGGish: loading one over a random VGGish fails, naming the fix."""
    model = backbones.create("tpavi", preset="tiny")
    state = tiny_official_state(model)
    head_before = model.output_conv[4].weight.clone()
    with pytest.raises(ValueError, match=r"no VGGish weights .* pretrained_vggish=.*allow_random_vggish=True"):
        model.load_official(state)
    assert torch.equal(model.output_conv[4].weight, head_before)  # nothing loaded
    model.load_official(state, allow_random_vggish=True)
    assert torch.equal(model.output_conv[4].weight, state["output_conv.4.weight"])


def test_precomputed_audio_embeddings_give_the_same_output() -> None:
    """``audio [B, T, 128]`` (VGGish run beforehand, as the original feeds TPAVI) equals log-mel input."""
    for dataset, frames_per_clip in (("s4", 5), ("avss", 10)):
        model = backbones.create("tpavi", preset="tiny", dataset=dataset).eval()
        frames, audio = clip(batch=2, frames=frames_per_clip)
        valid = torch.ones(2, frames_per_clip, dtype=torch.bool)
        valid[1, -3:] = False
        with torch.no_grad():
            embeddings = model.vggish(audio.flatten(0, 1)).unflatten(0, (2, frames_per_clip))
            for frame_valid in (None, valid):
                from_log_mel = model(frames, audio, frame_valid=frame_valid)
                from_embeddings = model(frames, embeddings, frame_valid=frame_valid)
                assert torch.equal(from_embeddings.logits, from_log_mel.logits)
                assert torch.equal(from_embeddings.aux["audio_embedding"], from_log_mel.aux["audio_embedding"])
    with pytest.raises(ValueError, match=r"VGGish embeddings \[B, T, 128\]"):
        model(frames, embeddings[..., :64])


def test_tpavi_block_matches_hand_computed_affinity() -> None:
    """C=2, C'=1, T=2 frames of 1x1: y_i = (1/N) sum_j theta_i phi_j g_j with no softmax."""
    for affinity in ("factorised", "naive"):
        block = TPAVIBlock(2, affinity=affinity).eval()
        with torch.no_grad():
            for conv, row in ((block.theta, [1.0, 0.0]), (block.g, [0.0, 1.0]), (block.phi, [0.0, 1.0])):
                conv.weight.copy_(torch.tensor(row).view(1, 2, 1, 1, 1))
                conv.bias.zero_()
            block.align_channel.weight.zero_()
            block.align_channel.bias.zero_()
            block.align_channel.weight[1, 0] = 1.0  # aligned audio channel 1 = audio feature 0
        captured: dict[str, torch.Tensor] = {}

        def capture(_module, inputs, _output, store=captured) -> None:
            store["y"] = inputs[0]

        block.W_z.register_forward_hook(capture)
        x = torch.tensor([[1.0, 3.0], [2.0, 4.0]]).view(1, 2, 2, 1, 1)  # frame 0: (1, 2), frame 1: (3, 4)
        audio = torch.zeros(1, 2, 128)
        audio[0, 0, 0], audio[0, 1, 0] = 1.0, -1.0  # phi per frame: +1, -1
        z, aligned = block(x, audio)
        # y_0 = (1*1*2 + 1*(-1)*4) / 2 = -1 ;  y_1 = (3*1*2 + 3*(-1)*4) / 2 = -3
        assert captured["y"].flatten().tolist() == pytest.approx([-1.0, -3.0])
        assert aligned.shape == (1, 2, 2) and aligned[0, :, 1].tolist() == [1.0, -1.0]
        # W_z's BatchNorm starts at zero: the block starts as LayerNorm(x) over channels.
        expected = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 4, 1), (2,)).permute(0, 4, 1, 2, 3)
        assert torch.allclose(z, expected, atol=1e-6)


def test_factorised_affinity_equals_naive_in_float64() -> None:
    torch.manual_seed(0)
    block = TPAVIBlock(16).double()
    with torch.no_grad():  # non-zero W_z so the affinity reaches the output
        block.W_z[1].weight.normal_()
        block.W_z[1].bias.normal_()
    x = torch.randn(2, 16, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    audio = torch.randn(2, 5, 128, dtype=torch.float64)
    results = {}
    for mode in ("naive", "factorised"):
        block.affinity = mode
        z, _ = block(x, audio)
        grad_x, grad_theta = torch.autograd.grad(z.pow(2).sum(), (x, block.theta.weight))
        results[mode] = (z, grad_x, grad_theta)
    for naive, factorised in zip(results["naive"], results["factorised"]):
        assert torch.allclose(naive, factorised, rtol=0, atol=1e-5)
    assert results["naive"][0].std() > 0.1  # a real signal, not a degenerate one


def test_whole_model_factorised_equals_naive() -> None:
    torch.manual_seed(0)
    model = backbones.create("tpavi", preset="tiny").double().eval()
    for stage in range(1, 5):
        with torch.no_grad():
            getattr(model, f"tpavi_b{stage}").W_z[1].weight.normal_()
    frames, audio = (t.double() for t in clip())
    model.set_affinity("naive")
    naive = model(frames, audio).logits
    model.set_affinity("factorised")
    assert torch.allclose(model(frames, audio).logits, naive, rtol=0, atol=1e-5)


def test_residual_conv_unit_skip_adds_relu_of_input() -> None:
    """The original's in-place ReLU makes the skip add relu(x), not x."""
    unit = ResidualConvUnit(3)
    with torch.no_grad():
        for conv in (unit.conv1, unit.conv2):
            conv.weight.zero_()
            conv.bias.zero_()
    x = torch.tensor([-2.0, 0.5, -0.1]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.equal(unit(x), torch.relu(x))


@pytest.mark.parametrize(("visual_encoder", "last_channels"), [("pvt_v2_b5", 64), ("resnet50", 2048)])
def test_tiny_forward_backward_shapes(visual_encoder: str, last_channels: int) -> None:
    model = backbones.create("tpavi", preset="tiny", visual_encoder=visual_encoder)
    model.train()
    assert not model.vggish.training
    frames, audio = clip()
    out = model(frames, audio)
    assert out.logits.shape == (1, 5, 1, 64, 64)
    stage_features = out.aux["stage_features"]
    assert [tuple(f.shape) for f in stage_features] == [(5, 32, 64 // s, 64 // s) for s in (4, 8, 16, 32)]
    assert all(f.min() == 0 for f in stage_features)  # ReLU-ed (LayerNorm output has negatives)
    assert [tuple(a.shape) for a in out.aux["audio_aligned"]] == [(5, 32)] * 4
    assert out.aux["visual_pooled"].shape == (1, 5, last_channels)
    assert out.aux["audio_embedding"].shape == (1, 5, 128)
    out.logits.mean().backward()
    assert model.conv1.conv2d_list[0].weight.grad is not None
    assert model.tpavi_b1.theta.weight.grad is not None
    assert all(p.grad is None for p in model.vggish.parameters())


def test_tpavi_mixes_frames_within_a_clip_only() -> None:
    model = backbones.create("tpavi", preset="tiny").eval()
    with torch.no_grad():
        for stage in range(1, 5):
            getattr(model, f"tpavi_b{stage}").W_z[1].weight.fill_(1.0)
    frames, audio = clip(batch=2)
    base = model(frames, audio).logits
    frames2 = frames.clone()
    frames2[0, 4] += 1.0  # change the last frame of clip 0
    changed = model(frames2, audio).logits
    assert not torch.allclose(changed[0, 0], base[0, 0])  # temporal interaction inside the clip
    assert torch.equal(changed[1], base[1])  # other clip untouched


def test_avss_ten_frames_are_two_independent_groups_and_padding_is_zeroed() -> None:
    model = backbones.create("tpavi", preset="tiny", dataset="avss").eval()
    assert model.tpavi_b1.align_channel.bias is None
    with torch.no_grad():
        for stage in range(1, 5):
            getattr(model, f"tpavi_b{stage}").W_z[1].weight.fill_(1.0)
    frames, audio = clip(frames=10)
    valid = torch.tensor([[True] * 5 + [False] * 5])
    out = model(frames, audio, frame_valid=valid)
    assert out.logits.shape == (1, 10, 71, 64, 64)
    assert torch.count_nonzero(out.logits[0, 5:]) == 0
    assert torch.count_nonzero(out.aux["audio_embedding"][0, 5:]) == 0
    # Frames 5..9 form their own 5-frame group: changing them leaves frames 0..4 unchanged.
    all_valid = torch.ones(1, 10, dtype=torch.bool)
    base = model(frames, audio, frame_valid=all_valid).logits
    frames2, audio2 = frames.clone(), audio.clone()
    frames2[0, 5:] += 1.0
    audio2[0, 5:] += 1.0
    changed = model(frames2, audio2, frame_valid=all_valid).logits
    assert torch.equal(changed[0, :5], base[0, :5])
    assert not torch.allclose(changed[0, 5:], base[0, 5:])


def test_bad_inputs_raise_clear_errors() -> None:
    model = backbones.create("tpavi", preset="tiny")
    frames, audio = clip(frames=5)
    with pytest.raises(ValueError, match="groups of 5"):
        model(frames[:, :3], audio[:, :3])
    with pytest.raises(ValueError, match="multiple of 32"):
        model(frames[..., :60, :60], audio)
    with pytest.raises(ValueError, match=r"\[B, T, 1, 96, 64\]"):
        model(frames, audio[..., :32])
    with pytest.raises(ValueError, match="frame_valid"):
        model(frames, audio, frame_valid=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="dataset"):
        backbones.create("tpavi", preset="tiny", dataset="v3")


def test_pretrained_files_load_from_local_paths(tmp_path) -> None:
    reference = backbones.create("tpavi", preset="tiny")
    pvt_official = to_official_pvt_keys(reference.visual_encoder.state_dict())
    pvt_official["head.weight"] = torch.zeros(1000, 64)  # ImageNet head: dropped
    pvt_official["head.bias"] = torch.zeros(1000)
    torch.save(pvt_official, tmp_path / "pvt_v2_b5.pth")
    torch.save(reference.vggish.state_dict(), tmp_path / "vggish.pth")
    model = backbones.create(
        "tpavi",
        preset="tiny",
        pretrained_visual=tmp_path / "pvt_v2_b5.pth",
        pretrained_vggish=tmp_path / "vggish.pth",
    )
    assert torch.equal(
        model.visual_encoder.stages[1].blocks[0].mlp.fc1.weight,
        reference.visual_encoder.stages[1].blocks[0].mlp.fc1.weight,
    )
    assert torch.equal(model.vggish.embeddings[0].weight, reference.vggish.embeddings[0].weight)


def test_recipes_follow_the_original_scripts() -> None:
    assert "tpavi" in backbones.list()
    model_cls = TPAVI
    s4, ms3, avss = (model_cls.recipes[d] for d in ("s4", "ms3", "avss"))
    assert (s4.optimizer, s4.lr, s4.weight_decay, s4.epochs, s4.batch_size) == ("adam", 1e-4, 0.0, 15, 4)
    assert s4.loss_terms == {"bce": 1.0} and s4.gt_frames == "first"
    assert ms3.loss_terms == {"bce": 1.0, "avm_kl": 0.5} and ms3.epochs == 30
    assert avss.loss_terms == {"avss_ce": 1.0, "avm_kl": 0.5} and avss.epochs == 60 and avss.num_frames == 10
    assert (s4.test_batch_frames, ms3.test_batch_frames, avss.test_batch_frames) == (20, 20, 40)
    assert all(r.eval_size == 224 and r.input_size == 224 and r.seed == 123 for r in (s4, ms3, avss))
    for recipe in (s4, ms3, avss):
        assert set(recipe.loss_terms) <= set(LOSS_TERMS)
