"""AVSegFormer: sizes of the original, forward/backward of the tiny preset, the pure-PyTorch
deformable attention against explicit bilinear sampling, the channel-gate mixer, strict loading
of the original checkpoint layouts, and the Dice / mix-Dice losses."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from official_layouts import meta_state_dict, read_layout
from torch import nn

import backbones
from backbones.avsegformer_parts import CrossModalMixer, sine_positional_encoding
from backbones.base import AVSOutput
from backbones.deform_attn import MSDeformAttn, ms_deform_attn_sample
from backbones.encoders.pvt import to_official_pvt_keys
from backbones.losses import LOSS_TERMS, compute_loss, dice, mix_dice


def n_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def tiny(dataset: str = "s4", visual_encoder: str = "pvt_v2_b5", seed: int = 0):
    torch.manual_seed(seed)
    return backbones.create(
        "avsegformer", dataset=dataset, preset="tiny", visual_encoder=visual_encoder
    )


# ----------------------------------------------------------------------------- sizes


@pytest.fixture(scope="module")
def full_pvt_s4():
    with torch.device("meta"):
        return backbones.create("avsegformer", dataset="s4", visual_encoder="pvt_v2_b5")


def test_full_parameter_counts_match_the_original(full_pvt_s4):
    # The original head (vvvb-github/AVSegFormer model/head/AVSegHead.py) has 32,436,288 parameters,
    # including the unused fpn + attn_fc (2,102,208).
    model = full_pvt_s4
    assert n_params(model.head) == 32_436_288 - 2_102_208 == 30_334_080
    assert n_params(model.backbone) == 81_443_008
    assert n_params(model.audio_proj) == 33_024
    assert n_params(model.vggish) == 72_141_184
    # Construction freezes the backbone (5 frozen epochs for S4) and VGGish is never trained.
    assert n_params(model, trainable_only=True) == 30_334_080 + 33_024
    model.freeze_visual(False)
    # 113,912,320 trainable in the original model, minus the unused fpn + attn_fc.
    assert n_params(model, trainable_only=True) == 113_912_320 - 2_102_208
    assert n_params(model.vggish, trainable_only=True) == 0


def test_full_avss_and_resnet_head_sizes():
    with torch.device("meta"):
        avss = backbones.create("avsegformer", dataset="avss")
        r50 = backbones.create("avsegformer", dataset="s4", visual_encoder="resnet50")
    # AVSS: 71 output channels in fc.4 (the original total grows by 2 x 70 x 32 with attn_fc.4).
    assert n_params(avss.head) == 30_334_080 + 70 * 32
    assert avss.head.fc[-1].weight.shape == (71, 32, 1, 1)
    # AVSS trains the backbone from epoch 0.
    assert all(p.requires_grad for p in avss.backbone.parameters())
    # R50 head (33,157,184 in the original, with fpn + attn_fc): in_proj takes 256/512/1024/2048 channels.
    assert n_params(r50.head) == 33_157_184 - 2_102_208


# ----------------------------------------------------------------------------- forward/backward


@pytest.mark.parametrize("dataset, num_classes", [("s4", 1), ("avss", 71)])
def test_tiny_forward_backward(dataset, num_classes):
    model = tiny(dataset)
    model.train()
    assert not model.vggish.training  # frozen VGGish stays in eval mode
    b, t, size = 1, 5, 64
    frames = torch.randn(b, t, 3, size, size)
    audio = torch.randn(b, t, 1, 96, 64)
    out = model(frames, audio)
    assert out.logits.shape == (b, t, num_classes, size, size)
    e = model.head.cfg.embed_dim
    assert out.aux["mask_feature"].shape == (b, t, e, size // 4, size // 4)
    assert out.aux["visual_pooled"].shape == (b, t, model.backbone.out_channels[-1])
    assert out.aux["audio_embedding"].shape == (b, t, 128)
    assert out.aux["audio_token"].shape == (b, t, e)

    (out.logits.mean() + out.aux["mask_feature"].mean()).backward()
    head_grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None for g in head_grads)
    assert any(g.abs().sum() > 0 for g in head_grads)
    assert model.audio_proj.weight.grad is not None and model.audio_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.vggish.parameters())
    backbone_grads = [p.grad for p in model.backbone.parameters()]
    if dataset == "s4":  # frozen for the first 5 epochs of the S4 recipe
        assert all(g is None for g in backbone_grads)
    else:  # AVSS: 0 frozen epochs
        assert all(g is not None for g in backbone_grads)


def test_freeze_visual_toggles_backbone_gradients():
    model = tiny("s4")
    model.freeze_visual(False)
    out = model(torch.randn(1, 2, 3, 32, 32), torch.randn(1, 2, 1, 96, 64))
    out.logits.sum().backward()
    assert all(p.grad is not None for p in model.backbone.parameters())
    model.freeze_visual(True)
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_frame_valid_zeroes_padded_frames_only():
    model = tiny("avss").eval()
    frames = torch.randn(1, 4, 3, 32, 32)
    audio = torch.randn(1, 4, 1, 96, 64)
    valid = torch.tensor([[True, True, False, False]])
    with torch.no_grad():
        masked = model(frames, audio, frame_valid=valid)
        plain = model(frames, audio)
    assert masked.logits[:, 2:].abs().max() == 0
    assert masked.aux["mask_feature"][:, 2:].abs().max() == 0
    assert masked.aux["visual_pooled"][:, 2:].abs().max() == 0
    # Frames are independent: valid frames are unchanged by the padding.
    torch.testing.assert_close(masked.logits[:, :2], plain.logits[:, :2])
    assert plain.logits[:, 2:].abs().max() > 0
    # visual_pooled is the global average of the raw stage-4 map.
    with torch.no_grad():
        stage4 = model.backbone(frames.flatten(0, 1))[-1]
    torch.testing.assert_close(plain.aux["visual_pooled"].flatten(0, 1), stage4.mean(dim=(2, 3)))


def test_frames_are_processed_independently():
    model = tiny("s4").eval()
    frames = torch.randn(1, 3, 3, 32, 32)
    audio = torch.randn(1, 3, 1, 96, 64)
    with torch.no_grad():
        clip = model(frames, audio).logits
        single = model(frames[:, 1:2], audio[:, 1:2]).logits
    torch.testing.assert_close(clip[:, 1:2], single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "frames_shape, audio_shape, message",
    [
        ((1, 5, 3, 62, 64), (1, 5, 1, 96, 64), "multiples of 4"),
        ((1, 5, 3, 64, 64), (1, 4, 1, 96, 64), "audio must be VGGish log-mel"),
        ((5, 3, 64, 64), (1, 5, 1, 96, 64), "frames must be"),
    ],
)
def test_bad_inputs_raise_clear_errors(frames_shape, audio_shape, message):
    model = tiny("s4")
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(frames_shape), torch.zeros(audio_shape))


def test_factory_rejects_unknown_options():
    with pytest.raises(TypeError, match="num_querys"):
        backbones.create("avsegformer", preset="tiny", num_querys=4)
    with pytest.raises(ValueError, match="dataset"):
        backbones.create("avsegformer", preset="tiny", dataset="v3")
    model = backbones.create("avsegformer", preset="tiny", num_queries=8)
    assert model.head.mlp.layers[0].in_channels == 8


# ----------------------------------------------------------------------------- deformable attention


def bilinear_zero_padded(value_map: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Explicit bilinear read of ``value_map [H, W, D]`` at normalised (x, y), zeros outside
    (Deformable-DETR convention: pixel centres at (i + 0.5) / size)."""
    h, w, _ = value_map.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(value_map.shape[-1], dtype=value_map.dtype)
    for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yi < h and 0 <= xi < w:
                out += wy * wx * value_map[yi, xi]
    return out


def test_deformable_sampling_matches_explicit_bilinear():
    torch.manual_seed(0)
    shapes = [(4, 5), (2, 3)]
    n, m, d, lq, p = 2, 3, 4, 3, 2
    value = torch.randn(n, sum(h * w for h, w in shapes), m, d, dtype=torch.float64)
    # Locations inside, on the border and outside [0, 1].
    locations = torch.rand(n, lq, m, len(shapes), p, 2, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(n, lq, m, len(shapes), p, dtype=torch.float64)

    got = ms_deform_attn_sample(value, shapes, locations, weights)

    expected = torch.zeros(n, lq, m * d, dtype=torch.float64)
    starts = [0, shapes[0][0] * shapes[0][1]]
    for b in range(n):
        for q in range(lq):
            for head in range(m):
                acc = torch.zeros(d, dtype=torch.float64)
                for level, (h, w) in enumerate(shapes):
                    level_map = value[b, starts[level] : starts[level] + h * w, head].view(h, w, d)
                    for point in range(p):
                        x, y = locations[b, q, head, level, point].tolist()
                        sample = bilinear_zero_padded(level_map, x, y)
                        acc += weights[b, q, head, level, point] * sample
                expected[b, q, head * d : (head + 1) * d] = acc
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_msdeformattn_offsets_are_pixels_of_each_level():
    """Offsets that land on pixel centres return the (value-projected) pixels, averaged by the
    uniform attention of a zero ``attention_weights`` layer."""
    torch.manual_seed(0)
    shapes = [(2, 3), (1, 2)]
    attn = MSDeformAttn(d_model=4, n_levels=2, n_heads=1, n_points=1)
    src = torch.randn(1, 2 * 3 + 1 * 2, 4)
    query = torch.randn(1, 1, 4)
    ref = torch.tensor([0.5 / 3, 0.5 / 2])  # centre of pixel (row 0, col 0) of level 0
    # Targets: level 0 pixel (row 1, col 1); level 1 pixel (row 0, col 1).
    targets = [(1, 1), (0, 1)]
    offsets = []
    for (h, w), (row, col) in zip(shapes, targets):
        offsets += [(col + 0.5) - ref[0].item() * w, (row + 0.5) - ref[1].item() * h]
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(torch.tensor(offsets))
    out = attn(query, ref.view(1, 1, 1, 2).expand(1, 1, 2, 2), src, shapes)

    values = attn.value_proj(src)
    picked = 0.5 * (values[0, 1 * 3 + 1] + values[0, 6 + 0 * 2 + 1])
    torch.testing.assert_close(out[0, 0], attn.output_proj(picked), atol=1e-5, rtol=1e-5)


def test_sine_positional_encoding_hand_computed():
    pos = sine_positional_encoding(2, 3, num_feats=4, temperature=100.0, device=torch.device("cpu"))
    assert pos.shape == (6, 8)
    # Row 1, column 2 -> positions y = 2, x = 3 (counted from 1); dim_t = (1, 1, 10, 10).
    y, x = 2.0, 3.0
    expected = [math.sin(y), math.cos(y), math.sin(y / 10), math.cos(y / 10),
                math.sin(x), math.cos(x), math.sin(x / 10), math.cos(x / 10)]
    torch.testing.assert_close(pos[1 * 3 + 2], torch.tensor(expected))


# ----------------------------------------------------------------------------- mixer


def test_mixer_gate_hand_computed():
    torch.manual_seed(0)
    mixer = CrossModalMixer(dim=8, num_heads=2)
    fmap = torch.randn(2, 8, 3, 2)
    audio = torch.randn(2, 1, 8)
    gate = mixer.gate(fmap, audio)
    for b in range(2):
        pixels = fmap[b].flatten(1).T  # [6, 8]
        q = audio[b, 0] @ mixer.q_proj.weight.T
        kv = pixels @ mixer.kv_proj.weight.T
        k, v = kv[:, :8], kv[:, 8:]
        attended = []
        for head in range(2):
            sl = slice(4 * head, 4 * head + 4)
            scores = (k[:, sl] @ q[sl]) / math.sqrt(4)
            attended.append(torch.softmax(scores, 0) @ v[:, sl])
        expected = torch.sigmoid(mixer.proj(torch.cat(attended)))
        torch.testing.assert_close(gate[b], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(mixer(fmap, audio), fmap * gate[:, :, None, None])


def test_mixer_has_no_residual():
    mixer = CrossModalMixer(dim=8, num_heads=2)
    fmap = torch.randn(1, 8, 4, 4)
    audio = torch.randn(1, 1, 8)
    with torch.no_grad():
        mixer.proj.weight.zero_()
        mixer.proj.bias.fill_(-1e4)  # sigmoid -> 0: a closed gate
    assert mixer(fmap, audio).abs().max() == 0
    with torch.no_grad():
        mixer.proj.bias.fill_(1e4)  # sigmoid -> 1: an open gate passes the feature unchanged
    torch.testing.assert_close(mixer(fmap, audio), fmap)


def test_closed_gate_zeroes_the_model_mask_feature():
    model = tiny("s4").eval()
    with torch.no_grad():
        model.head.fusion_block.proj.weight.zero_()
        model.head.fusion_block.proj.bias.fill_(-1e4)
        out = model(torch.randn(1, 2, 3, 32, 32), torch.randn(1, 2, 1, 96, 64))
    assert out.aux["mask_feature"].abs().max() == 0


# ----------------------------------------------------------------------------- official checkpoints


@pytest.mark.parametrize(
    "layout_file, tensors, elements",
    [
        # The released checkpoints' layouts: tensors, and parameters with the frozen VGGish and the unused
        # fpn + attn_fc (R50: including the dead layer3_2/layer4_2 branch).
        ("avsegformer_pvt_v2_b5.tsv", 1413, 186_053_504),
        ("avsegformer_pvt_v2_b5_avss.tsv", 1413, 186_057_984),
        ("avsegformer_resnet50.tsv", None, 150_902_528),
    ],
)
def test_official_layouts_match_the_reference_sizes(layout_file, tensors, elements):
    layout = read_layout(layout_file)
    buffers = ("running_mean", "running_var", "num_batches_tracked")  # B2_ResNet BatchNorms
    params = [shape for name, shape in layout.items() if not name.endswith(buffers)]
    assert sum(math.prod(shape) for shape in params) == elements
    if tensors is not None:
        assert len(layout) == tensors


@pytest.mark.parametrize(
    "layout_file, dataset, visual_encoder",
    [
        ("avsegformer_pvt_v2_b5.tsv", "s4", "pvt_v2_b5"),
        ("avsegformer_pvt_v2_b5_avss.tsv", "avss", "pvt_v2_b5"),
        ("avsegformer_resnet50.tsv", "ms3", "resnet50"),
    ],
)
def test_official_layout_loads_into_the_full_model(layout_file, dataset, visual_encoder, caplog):
    with torch.device("meta"):
        model = backbones.create("avsegformer", dataset=dataset, visual_encoder=visual_encoder)
    # DataParallel-saved keys carry "module."; the loader strips it.
    state = {f"module.{k}": v for k, v in meta_state_dict(read_layout(layout_file)).items()}
    with caplog.at_level(logging.INFO):
        model.load_official(state)
    assert "dropped 11 unused tensors" in caplog.text  # head.fpn (6) + head.attn_fc (5)


def official_state_of(model: nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random weights for ``model`` under the original key names (PVT backbone), plus the unused
    ``head.fpn``/``head.attn_fc`` tensors an original checkpoint carries."""
    gen = torch.Generator().manual_seed(seed)
    ours = {k: torch.randn(v.shape, generator=gen) for k, v in model.state_dict().items()}
    backbone = {k[len("backbone."):]: v for k, v in ours.items() if k.startswith("backbone.")}
    state = {f"backbone.{k}": v for k, v in to_official_pvt_keys(backbone).items()}
    state.update({k: v for k, v in ours.items() if not k.startswith("backbone.")})
    e = model.head.cfg.embed_dim
    state["head.fpn.up1.1.weight"] = torch.randn(e, e, 3, 3, generator=gen)
    state["head.attn_fc.4.weight"] = torch.randn(1, 32, 1, 1, generator=gen)
    return state


def test_official_values_land_in_the_right_parameters():
    model = tiny("s4")
    state = official_state_of(model)
    model.load_official(state)
    backbone = model.backbone
    pairs = {
        "backbone.patch_embed1.proj.weight": backbone.patch_embed.proj.weight,
        "backbone.patch_embed2.norm.bias": backbone.stages[1].downsample.norm.bias,
        "backbone.block1.0.attn.kv.weight": backbone.stages[0].blocks[0].attn.kv.weight,
        "backbone.block3.0.mlp.dwconv.dwconv.bias": backbone.stages[2].blocks[0].mlp.dwconv.bias,
        "backbone.norm4.weight": backbone.stages[3].norm.weight,
        "vggish.embeddings.4.weight": model.vggish.embeddings[4].weight,
        "audio_proj.bias": model.audio_proj.bias,
        "head.level_embed": model.head.level_embed,
        "head.query_generator.layers.1.cross_attn.in_proj_weight":
            model.head.query_generator.layers[1].cross_attn.in_proj_weight,
        "head.transformer.encoder.layers.1.self_attn.sampling_offsets.bias":
            model.head.transformer.encoder.layers[1].self_attn.sampling_offsets.bias,
        "head.transformer.decoder.layers.0.norm3.weight":
            model.head.transformer.decoder.layers[0].norm3.weight,
        "head.fusion_block.proj.bias": model.head.fusion_block.proj.bias,
        "head.fc.4.weight": model.head.fc[4].weight,
    }
    for name, param in pairs.items():
        assert torch.equal(param, state[name]), name


def test_official_resnet_names_load_and_drop_the_dead_branch():
    model = tiny("s4", visual_encoder="resnet50")
    ours = {k: torch.randn(v.shape) for k, v in model.state_dict().items()}
    state = {}
    for key, value in ours.items():
        for layer in ("layer3", "layer4"):
            prefix = f"backbone.{layer}."
            if key.startswith(prefix):
                state[f"backbone.{layer}_1." + key[len(prefix):]] = value
                state[f"backbone.{layer}_2." + key[len(prefix):]] = torch.zeros_like(value)
                break
        else:
            state[key] = value
    model.load_official(state)
    torch.testing.assert_close(
        model.backbone.layer3[0].conv1.weight, state["backbone.layer3_1.0.conv1.weight"]
    )


def test_official_loading_errors_name_the_key():
    model = tiny("s4")
    good = official_state_of(model)

    with pytest.raises(KeyError, match=r"head\.extra_proj\.weight"):
        model.load_official({**good, "head.extra_proj.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match=r"block1\.0\.attn\.qq\.weight"):
        model.load_official({**good, "backbone.block1.0.attn.qq.weight": torch.zeros(1)})

    missing = dict(good)
    del missing["head.out_conv.0.weight"]
    with pytest.raises(KeyError, match=r"head\.out_conv\.0\.weight"):
        model.load_official(missing)

    wrong = dict(good)
    wrong["head.mlp.layers.1.weight"] = torch.zeros(3, 3, 1, 1)
    expected = r"head\.mlp\.layers\.1\.weight.*\(3, 3, 1, 1\).*\(64, 64, 1, 1\)"
    with pytest.raises(ValueError, match=expected):
        model.load_official(wrong)


# ----------------------------------------------------------------------------- losses


def test_dice_hand_computed_and_frame_weighted():
    # Logits 0 -> p = 0.5 everywhere on 2x2 frames.
    output = AVSOutput(logits=torch.zeros(1, 2, 1, 2, 2))
    target = torch.tensor([[[[1, 0], [0, 0]], [[0, 0], [0, 0]]]], dtype=torch.float32)
    # Frame 0: 1 - 2 * 0.5 / ((4 * 0.25 + 0.001) + (1 + 0.001)); frame 1 (empty GT): 1.
    frame0 = 1 - 1.0 / 2.002
    first_only = dice(output, target, torch.tensor([[1.0, 0.0]]))  # S4: frame 1 only
    assert first_only.item() == pytest.approx(frame0, abs=1e-6)
    both = dice(output, target, torch.tensor([[1.0, 1.0]]))
    assert both.item() == pytest.approx((frame0 + 1.0) / 2, abs=1e-6)


def test_mix_dice_uses_the_channel_mean_of_the_mask_feature_against_foreground():
    # Mask feature [B=1, T=2, E=2, 1, 1]: frame 0 channels (1, -1) -> mean 0 -> p = 0.5 at every
    # pixel after upsampling; frame 1 channels (3, 1) -> mean 2 -> p = sigmoid(2).
    mask_feature = torch.tensor([[1.0, -1.0], [3.0, 1.0]]).view(1, 2, 2, 1, 1)
    output = AVSOutput(logits=torch.zeros(1, 2, 71, 4, 4), aux={"mask_feature": mask_feature})
    target = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    target[0, :, :2, :2] = 7  # AVSS class index: counts as foreground (GT > 0)
    frame0 = 1 - 2 * (0.5 * 4) / ((16 * 0.25 + 0.001) + (4 + 0.001))
    p = torch.sigmoid(torch.tensor(2.0)).item()
    frame1 = 1 - 2 * (p * 4) / ((16 * p * p + 0.001) + (4 + 0.001))
    loss = mix_dice(output, target, torch.tensor([[1.0, 1.0]]))
    assert loss.item() == pytest.approx((frame0 + frame1) / 2, abs=1e-6)
    loss_padded = mix_dice(output, target, torch.tensor([[1.0, 0.0]]))  # flag-weighted
    assert loss_padded.item() == pytest.approx(frame0, abs=1e-6)


def test_mix_dice_needs_the_mask_feature():
    with pytest.raises(KeyError, match="mask_feature"):
        mix_dice(
            AVSOutput(logits=torch.zeros(1, 1, 1, 4, 4)), torch.zeros(1, 1, 4, 4), torch.ones(1, 1)
        )


@pytest.mark.parametrize("dataset", ["s4", "ms3", "avss"])
def test_recipe_losses_run_and_reach_the_head(dataset):
    model = tiny(dataset)
    recipe = model.recipe(dataset)
    assert set(recipe.loss_terms) <= set(LOSS_TERMS)
    out = model(torch.randn(1, 2, 3, 32, 32), torch.randn(1, 2, 1, 96, 64))
    classes = 71 if dataset == "avss" else 2
    target = torch.randint(0, classes, (1, 2, 32, 32))
    total, parts = compute_loss(recipe.loss_terms, out, target, torch.tensor([[1.0, 0.0]]))
    assert set(parts) == set(recipe.loss_terms)
    assert torch.isfinite(total)
    total.backward()
    assert model.head.fusion_block.proj.weight.grad.abs().sum() > 0
