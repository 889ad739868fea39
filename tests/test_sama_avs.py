"""SAMA-AVS and the SAM encoder/decoder: sizes, frozen parts, audio adapters, windowed
relative-position attention, official checkpoint layouts, losses and recipes.

Full-size models are built on the ``meta`` device (no memory, no time); numerical tests use the
``tiny`` preset. Official layouts come from ``tests/data/official_keys/{sam,sama_avs}_*.tsv``,
written by ``make_sam_keys.py`` there with Meta's own ``segment_anything`` classes.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from official_layouts import meta_state_dict, random_state_dict, read_layout

import backbones
from backbones.base import AVSOutput
from backbones.encoders.sam import (
    PositionEmbeddingRandom,
    ViTAttention,
    ViTBlock,
    decomposed_rel_pos_bias,
    window_partition,
    window_unpartition,
)
from backbones.losses import LOSS_TERMS, bce_logits, compute_loss, soft_iou
from backbones.sama_avs import SAMAAVS, TINY_CONFIG, build_sama_avs


def count(module: torch.nn.Module, prefix: str = "", exclude: str | None = None) -> int:
    return sum(
        p.numel()
        for n, p in module.named_parameters()
        if n.startswith(prefix) and (exclude is None or not n.startswith(exclude))
    )


def sam_encoder_params(dim: int, depth: int, heads: int, n_global: int) -> int:
    """Hand count of a SAM ViT at 1024 input (patch 16 -> 64x64 grid, window 14, neck 256)."""
    grid, window, out = 64, 14, 256
    head_dim = dim // heads
    patch_embed = 3 * 16 * 16 * dim + dim
    pos_embed = grid * grid * dim
    # norm1, norm2 (2 x 2D) + qkv (3D^2 + 3D) + proj (D^2 + D) + mlp (4D^2 + 4D + 4D^2 + D)
    block = 4 * dim + 3 * dim * dim + 3 * dim + dim * dim + dim + 8 * dim * dim + 5 * dim
    rel_pos = (depth - n_global) * 2 * (2 * window - 1) * head_dim + n_global * 2 * (2 * grid - 1) * head_dim
    neck = dim * out + 2 * out + out * out * 9 + 2 * out
    return patch_embed + pos_embed + depth * block + rel_pos + neck


def tiny_model(seed: int = 0) -> SAMAAVS:
    torch.manual_seed(seed)
    return build_sama_avs(preset="tiny")


def tiny_inputs(b: int = 1, t: int = 5, size: int = 64, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 3, size, size, generator=gen), torch.randn(b, t, 1, 96, 64, generator=gen)


# ---------------------------------------------------------------------------------- sizes


def test_vit_h_parameter_counts_match_the_reference() -> None:
    with torch.device("meta"):
        model = backbones.create("sama_avs")
    assert isinstance(model, SAMAAVS)
    # The original modules (jinxiang-liu/anno-free-AVS models/sam.py at ViT-H sizes), instantiated and counted.
    assert count(model, "image_encoder.", exclude="image_encoder.prompt_generator.") == 637_026_048
    assert count(model, "image_encoder.prompt_generator.") == 2_770_176
    assert count(model, "mask_decoder.") == 4_058_340
    assert count(model, "no_mask_embed.") == 256
    assert count(model, "audio_encoder.") == 72_141_184
    assert count(model) == 715_996_004
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 6_828_772
    assert sam_encoder_params(1280, 32, 16, 4) == 637_026_048  # the hand count agrees too


@pytest.mark.parametrize(
    ("variant", "dim", "depth", "heads"), [("vit_l", 1024, 24, 16), ("vit_b", 768, 12, 12)]
)
def test_vit_l_and_vit_b_build_with_their_sizes(variant: str, dim: int, depth: int, heads: int) -> None:
    with torch.device("meta"):
        model = backbones.create("sama_avs", sam_variant=variant)
    assert count(model, "image_encoder.", exclude="image_encoder.prompt_generator.") == sam_encoder_params(
        dim, depth, heads, 4
    )
    adapters = depth * (128 * 512 + 512) + 512 * dim + dim
    assert count(model, "image_encoder.prompt_generator.") == adapters
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == adapters + 4_058_340 + 256
    global_blocks = [i for i, blk in enumerate(model.image_encoder.blocks) if blk.window_size == 0]
    assert len(global_blocks) == 4 and global_blocks[-1] == depth - 1


# ---------------------------------------------------------------------------------- forward


def test_tiny_forward_backward_shapes_and_frozen_parts() -> None:
    model = tiny_model()
    model.train()
    assert not model.audio_encoder.audio_backbone.training  # VGGish stays in eval mode
    frames, audio = tiny_inputs()
    out = model(frames, audio)
    assert out.logits.shape == (1, 5, 1, 64, 64)
    assert out.aux["visual_pooled"].shape == (1, 5, TINY_CONFIG.prompt_embed_dim)
    assert out.aux["audio_embedding"].shape == (1, 5, 128)
    assert (out.aux["audio_embedding"] >= 0).all()  # VGGish ends with a ReLU
    out.logits.square().mean().backward()

    for name, param in model.named_parameters():
        trainable = name.startswith(("image_encoder.prompt_generator.", "mask_decoder.", "no_mask_embed."))
        assert param.requires_grad == trainable, name
        if not trainable:
            assert param.grad is None, name
    reached = [
        "image_encoder.prompt_generator.shared_mlp.weight",
        "image_encoder.prompt_generator.lightweight_mlp_0.0.weight",
        "image_encoder.prompt_generator.lightweight_mlp_1.0.weight",
        "no_mask_embed.weight",
        "mask_decoder.output_hypernetworks_mlps.0.layers.2.weight",
        "mask_decoder.transformer.layers.0.self_attn.q_proj.weight",
        "mask_decoder.output_upscaling.0.weight",
    ]
    params = dict(model.named_parameters())
    for name in reached:
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name
    # multimask_output=False: tokens 1-3 and the IoU head do not reach the output.
    assert params["mask_decoder.output_hypernetworks_mlps.1.layers.0.weight"].grad is None
    assert params["mask_decoder.iou_prediction_head.layers.0.weight"].grad is None


@pytest.mark.parametrize("size", [(64, 64), (50, 70), (96, 80)])
def test_logits_come_back_at_the_input_size(size: tuple[int, int]) -> None:
    model = tiny_model().eval()
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(2, 3, 3, *size, generator=gen)
    audio = torch.randn(2, 3, 1, 96, 64, generator=gen)
    with torch.no_grad():
        logits = model(frames, audio).logits
    assert logits.shape == (2, 3, 1, *size)
    assert torch.isfinite(logits).all()


def test_invalid_frames_are_skipped_and_zero() -> None:
    model = tiny_model().eval()
    frames, audio = tiny_inputs(b=2, t=3)
    valid = torch.tensor([[True, False, True], [False, True, True]])
    with torch.no_grad():
        full = model(frames, audio)
        part = model(frames, audio, frame_valid=valid)
        none = model(frames, audio, frame_valid=torch.zeros(2, 3, dtype=torch.bool))
    for key in ("visual_pooled", "audio_embedding"):
        assert torch.allclose(part.aux[key][valid], full.aux[key][valid], atol=1e-5)
        assert (part.aux[key][~valid] == 0).all()
    assert torch.allclose(part.logits[valid], full.logits[valid], atol=1e-5)
    assert (part.logits[~valid] == 0).all()
    assert none.logits.shape == (2, 3, 1, 64, 64) and (none.logits == 0).all()


def test_adapter_offsets_are_added_before_every_block() -> None:
    model = tiny_model().eval()
    encoder = model.image_encoder
    frames, audio = tiny_inputs(t=2)
    block_inputs: list[torch.Tensor] = []
    block_outputs: list[torch.Tensor] = []
    hooks = []
    for block in encoder.blocks:
        hooks.append(block.register_forward_pre_hook(lambda m, args: block_inputs.append(args[0])))
        hooks.append(block.register_forward_hook(lambda m, args, out: block_outputs.append(out)))
    with torch.no_grad():
        model(frames, audio)
        embedding = model.audio_encoder(audio.flatten(0, 1))
        generator = encoder.prompt_generator
        offsets = [
            generator.shared_mlp(getattr(generator, f"lightweight_mlp_{i}")(embedding))
            for i in range(encoder.depth)
        ]
        tokens = encoder.patch_embed(frames.flatten(0, 1)) + encoder.pos_embed
    for hook in hooks:
        hook.remove()
    previous = [tokens] + block_outputs[:-1]  # what block i would see without its adapter
    for i, (seen, before) in enumerate(zip(block_inputs, previous)):
        expected = before + offsets[i][:, None, None, :]  # same offset on every token
        assert torch.allclose(seen, expected, atol=1e-5), f"block {i}"
        assert offsets[i].abs().sum() > 0


def test_zero_shared_mlp_makes_the_output_independent_of_audio() -> None:
    model = tiny_model().eval()
    frames, audio = tiny_inputs()
    other_audio = torch.randn_like(audio) * 3
    with torch.no_grad():
        assert not torch.allclose(model(frames, audio).logits, model(frames, other_audio).logits, atol=1e-6)
        model.image_encoder.prompt_generator.shared_mlp.weight.zero_()
        model.image_encoder.prompt_generator.shared_mlp.bias.zero_()
        assert torch.equal(model(frames, audio).logits, model(frames, other_audio).logits)


# ---------------------------------------------------------------------------------- attention


def test_window_partition_pads_and_round_trips() -> None:
    x = torch.randn(2, 7, 5, 4)
    tiles, padded = window_partition(x, 3)
    assert padded == (9, 6)
    assert tiles.shape == (2 * 3 * 2, 3, 3, 4)
    # tile (row 1, col 0) of image 1 holds rows 3..5, cols 0..2
    assert torch.equal(tiles[6 + 2], x[1, 3:6, 0:3])
    # the bottom-right tile of image 0 is zero outside the 7x5 grid
    last = tiles[5]
    assert torch.equal(last[:1, :2], x[0, 6:7, 3:5]) and (last[1:] == 0).all() and (last[:, 2:] == 0).all()
    assert torch.equal(window_unpartition(tiles, 3, padded, (7, 5)), x)


def test_decomposed_rel_pos_bias_matches_the_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    h, w, d = 3, 4, 5
    q = torch.randn(2, h * w, d, generator=gen)
    rel_h = torch.randn(2 * h - 1, d, generator=gen)
    rel_w = torch.randn(2 * w - 1, d, generator=gen)
    bias = decomposed_rel_pos_bias(q, rel_h, rel_w, (h, w))
    assert bias.shape == (2, h * w, h * w)
    for m in range(2):
        for qi in range(h * w):
            for ki in range(h * w):
                (hq, wq), (hk, wk) = divmod(qi, w), divmod(ki, w)
                expected = q[m, qi] @ rel_h[hq - hk + h - 1] + q[m, qi] @ rel_w[wq - wk + w - 1]
                assert torch.isclose(bias[m, qi, ki], expected, atol=1e-5)
    with pytest.raises(ValueError, match="relative-position table has 5 rows"):
        decomposed_rel_pos_bias(q, rel_h, rel_w, (h + 1, w - 1))


def test_attention_equals_softmax_with_relative_positions() -> None:
    torch.manual_seed(0)
    attn = ViTAttention(8, 2, qkv_bias=True, rel_pos_size=(3, 3))
    torch.nn.init.normal_(attn.rel_pos_h)
    torch.nn.init.normal_(attn.rel_pos_w)
    x = torch.randn(2, 3, 3, 8)
    q, k, v = attn.qkv(x).reshape(2, 9, 3, 2, 4).permute(2, 0, 3, 1, 4)  # [N, heads, 9, 4]
    bias = decomposed_rel_pos_bias(q.reshape(4, 9, 4), attn.rel_pos_h, attn.rel_pos_w, (3, 3))
    bias = bias.view(2, 2, 9, 9)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4) + bias, dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 3, 3, 8))
    assert torch.allclose(attn(x), expected, atol=1e-5)


def test_windowed_block_pads_and_keeps_windows_separate() -> None:
    torch.manual_seed(0)
    block = ViTBlock(8, 2, mlp_ratio=2.0, qkv_bias=True, use_rel_pos=True, window_size=4, grid_size=(6, 7))
    assert block.attn.rel_pos_h.shape == (7, 4)  # 2 * window - 1 rows
    torch.nn.init.normal_(block.attn.rel_pos_h)
    torch.nn.init.normal_(block.attn.rel_pos_w)
    x = torch.randn(1, 6, 7, 8)
    out = block(x)
    assert out.shape == (1, 6, 7, 8)

    # A token changed in the top-left window changes only that window's outputs.
    changed = x.clone()
    changed[0, 1, 2] += 3 * torch.randn(8)  # not a constant shift, which norm1 would remove
    diff = (block(changed) - out).abs().sum(-1)[0]
    assert diff[:4, :4].min() > 0
    assert diff[4:, :].max() == 0 and diff[:, 4:].max() == 0

    # The bottom-right window (rows 4-5, cols 4-6) is padded to 4x4 after norm1, and the zero
    # padding tokens are attended to as keys (SAM does not mask them).
    y = block.norm1(x)
    tile = F.pad(y[:, 4:, 4:], (0, 0, 0, 1, 0, 2))  # [1, 4, 4, 8]
    attended = block.attn(tile)[:, :2, :3]
    after_attn = x[:, 4:, 4:] + attended
    expected = after_attn + block.mlp(block.norm2(after_attn))
    assert torch.allclose(out[:, 4:, 4:], expected, atol=1e-5)


def test_position_embedding_random_matches_the_formula() -> None:
    pe = PositionEmbeddingRandom(3)
    gauss = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    pe.positional_encoding_gaussian_matrix.copy_(gauss)
    out = pe((2, 3))
    assert out.shape == (6, 2, 3)
    # pixel centre of row 1, column 2 on a 2x3 grid: x = 2.5 / 3, y = 1.5 / 2
    x, y = 2.5 / 3, 1.5 / 2
    angles = [2 * math.pi * ((2 * x - 1) * gauss[0, j] + (2 * y - 1) * gauss[1, j]) for j in range(3)]
    expected = torch.tensor([math.sin(a) for a in angles] + [math.cos(a) for a in angles])
    assert torch.allclose(out[:, 1, 2], expected, atol=1e-5)


# ---------------------------------------------------------------------------------- weights


def test_vit_h_model_has_exactly_the_official_sama_layout() -> None:
    layout = read_layout("sama_avs_vit_h.tsv")
    with torch.device("meta"):
        model = backbones.create("sama_avs")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == layout
    # DDP-saved checkpoints carry "module."; it is stripped.
    model.load_official({"module." + k: v for k, v in meta_state_dict(layout).items()})


def test_load_official_tiny_puts_values_in_place() -> None:
    layout = read_layout("sama_avs_tiny.tsv")
    state = random_state_dict(layout)
    model = tiny_model()
    model.load_official(state)
    params = model.state_dict()
    for key in (
        "image_encoder.blocks.0.attn.rel_pos_h",
        "image_encoder.blocks.1.attn.rel_pos_w",
        "image_encoder.neck.2.weight",
        "image_encoder.prompt_generator.lightweight_mlp_1.0.weight",
        "image_encoder.prompt_generator.shared_mlp.bias",
        "mask_decoder.output_hypernetworks_mlps.0.layers.2.bias",
        "mask_decoder.transformer.final_attn_token_to_image.v_proj.weight",
        "pe_layer.positional_encoding_gaussian_matrix",
        "no_mask_embed.weight",
        "audio_encoder.audio_backbone.embeddings.4.weight",
    ):
        assert torch.equal(params[key], state[key]), key
    frames, audio = tiny_inputs()
    with torch.no_grad():
        assert torch.isfinite(model(frames, audio).logits).all()


def test_load_official_errors_name_the_key() -> None:
    layout = read_layout("sama_avs_tiny.tsv")
    model = tiny_model()
    unknown = random_state_dict(layout)
    unknown["image_encoder.prompt_generator.lightweight_mlp_7.0.weight"] = torch.zeros(16, 128)
    with pytest.raises(KeyError, match="lightweight_mlp_7"):
        model.load_official(unknown)
    missing = random_state_dict(layout)
    del missing["no_mask_embed.weight"]
    with pytest.raises(KeyError, match="no_mask_embed.weight"):
        model.load_official(missing)
    wrong = random_state_dict(layout)
    wrong["mask_decoder.mask_tokens.weight"] = torch.zeros(3, 32)
    with pytest.raises(ValueError, match=r"mask_decoder\.mask_tokens\.weight.*\(3, 32\).*\(4, 32\)"):
        model.load_official(wrong)


@pytest.mark.parametrize("variant", ["vit_h", "vit_l", "vit_b"])
def test_official_sam_checkpoint_layouts_load(variant: str) -> None:
    layout = read_layout(f"sam_{variant}.tsv")
    with torch.device("meta"):
        model = backbones.create("sama_avs", sam_variant=variant)
    model.load_sam(meta_state_dict(layout))


def test_sam_checkpoint_of_another_variant_is_refused() -> None:
    with torch.device("meta"):
        model = backbones.create("sama_avs", sam_variant="vit_b")
    with pytest.raises(KeyError, match=r"image_encoder\.blocks\.12\."):  # vit_h has 32 blocks
        model.load_sam(meta_state_dict(read_layout("sam_vit_h.tsv")))


@pytest.mark.parametrize("prompt_from_sam", [True, False])
def test_load_sam_tiny_values(prompt_from_sam: bool, caplog: pytest.LogCaptureFixture) -> None:
    sam = random_state_dict(read_layout("sam_tiny.tsv"), seed=3)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO):
        model.load_sam(sam, prompt_from_sam=prompt_from_sam)
    after = model.state_dict()
    loaded = (
        "image_encoder.pos_embed",
        "image_encoder.blocks.1.attn.qkv.weight",
        "mask_decoder.iou_token.weight",
    )
    for key in loaded:
        assert torch.equal(after[key], sam[key]), key
    kept = (
        "image_encoder.prompt_generator.shared_mlp.weight",
        "audio_encoder.audio_backbone.features.0.weight",
    )
    for key in kept:
        assert torch.equal(after[key], before[key]), key  # not in a SAM checkpoint: kept
    from_sam = {
        "no_mask_embed.weight": "prompt_encoder.no_mask_embed.weight",
        "pe_layer.positional_encoding_gaussian_matrix": (
            "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
        ),
    }
    for ours, theirs in from_sam.items():
        assert torch.equal(after[ours], sam[theirs] if prompt_from_sam else before[ours]), ours
    # 17 prompt_encoder tensors in a SAM checkpoint; the two used ones are not "dropped".
    dropped = 15 if prompt_from_sam else 17
    assert f"dropped {dropped} unused tensors" in caplog.text


def test_load_sam_errors_name_the_key() -> None:
    layout = read_layout("sam_tiny.tsv")
    model = tiny_model()
    missing = random_state_dict(layout)
    del missing["mask_decoder.iou_prediction_head.layers.2.bias"]
    with pytest.raises(KeyError, match="iou_prediction_head.layers.2.bias"):
        model.load_sam(missing)
    unknown = random_state_dict(layout)
    unknown["image_encoder.blocks.9.norm1.weight"] = torch.ones(32)
    with pytest.raises(KeyError, match="blocks.9.norm1.weight"):
        model.load_sam(unknown)
    wrong = random_state_dict(layout)
    wrong["image_encoder.pos_embed"] = torch.zeros(1, 4, 4, 32)  # a checkpoint for 32x32 input
    with pytest.raises(ValueError, match=r"image_encoder\.pos_embed.*\(1, 4, 4, 32\).*\(1, 8, 8, 32\)"):
        model.load_sam(wrong)


def test_factory_loads_local_weight_files(tmp_path: Path) -> None:
    sam = random_state_dict(read_layout("sam_tiny.tsv"), seed=5)
    sam_path = tmp_path / "sam_tiny.pth"
    torch.save(sam, sam_path)
    vggish_path = tmp_path / "vggish_tiny.pth"
    prefix = "audio_encoder.audio_backbone."
    sama = random_state_dict(read_layout("sama_avs_tiny.tsv"))
    vggish_state = {k[len(prefix) :]: v for k, v in sama.items() if k.startswith(prefix)}
    torch.save(vggish_state, vggish_path)
    model = build_sama_avs(preset="tiny", pretrained_sam=sam_path, pretrained_vggish=vggish_path)
    params = model.state_dict()
    assert torch.equal(params["mask_decoder.mask_tokens.weight"], sam["mask_decoder.mask_tokens.weight"])
    assert torch.equal(params["no_mask_embed.weight"], sam["prompt_encoder.no_mask_embed.weight"])
    assert torch.equal(params[prefix + "embeddings.0.weight"], vggish_state["embeddings.0.weight"])
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_sama_avs(preset="tiny", pretrained_sam=tmp_path / "missing.pth")


# ---------------------------------------------------------------------------------- interface


def test_registry_recipes_and_bad_arguments() -> None:
    assert "sama_avs" in backbones.list()
    model = tiny_model()
    s4, ms3 = model.recipe("s4"), model.recipe("ms3")
    for recipe in (s4, ms3):
        assert (recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.epochs) == ("adamw", 2e-4, 0.01, 80)
        sizes = (recipe.batch_size, recipe.input_size, recipe.eval_size, recipe.test_batch_frames)
        assert sizes == (2, 1024, 1024, 5)
        assert recipe.loss_terms == {"bce_logits": 1.0, "soft_iou": 1.0}
        assert recipe.scheduler == "cosine" and recipe.scheduler_args["T_max"] == 80
        assert recipe.scheduler_args["eta_min"] == 1e-7 and recipe.fscore_from_logits is False
        assert set(recipe.loss_terms) <= set(LOSS_TERMS)
    assert (s4.gt_frames, ms3.gt_frames) == ("first", "all")
    with pytest.raises(KeyError, match="avss"):
        model.recipe("avss")
    with pytest.raises(ValueError, match="no AVSS"):
        backbones.create("sama_avs", dataset="avss", preset="tiny")
    with pytest.raises(TypeError, match="windw_size"):
        backbones.create("sama_avs", preset="tiny", windw_size=4)
    with pytest.raises(ValueError, match="vit_x"):
        backbones.create("sama_avs", sam_variant="vit_x")
    with pytest.raises(ValueError, match="preset"):
        backbones.create("sama_avs", preset="small")
    frames, audio = tiny_inputs()
    with pytest.raises(ValueError, match=r"audio must be VGGish log-mel"):
        model(frames, audio[:, :, :, :64])
    with pytest.raises(ValueError, match="frame_valid"):
        model(frames, audio, frame_valid=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="frames must be"):
        model(frames[:, :, :1], audio)


def test_architecture_overrides_reach_the_model() -> None:
    model = build_sama_avs(preset="tiny", img_size=80, window_size=4, global_attn_indexes=[0])
    assert model.image_encoder.grid_size == (10, 10)
    assert [blk.window_size for blk in model.image_encoder.blocks] == [0, 4]
    frames, audio = tiny_inputs(t=2, size=80)
    with torch.no_grad():
        assert model(frames, audio).logits.shape == (1, 2, 1, 80, 80)


# ---------------------------------------------------------------------------------- losses


def _output(logits: torch.Tensor) -> AVSOutput:
    return AVSOutput(logits=logits)


def test_bce_logits_and_soft_iou_by_hand() -> None:
    # One clip, 2 frames of 1x2 pixels; only frame 0 is supervised (S4 style).
    logits = torch.tensor([[[[[0.0, math.log(3.0)]]], [[[5.0, -5.0]]]]])  # [1, 2, 1, 1, 2]
    target = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # [1, 2, 1, 2]
    weight = torch.tensor([[1.0, 0.0]])
    # frame 0: p = (0.5, 0.75); BCE = (-log 0.5 - log 0.25) / 2
    expected_bce = (math.log(2.0) + math.log(4.0)) / 2
    assert torch.isclose(bce_logits(_output(logits), target, weight), torch.tensor(expected_bce))
    # soft IoU: inter = 0.5, union = 1.25 + 1 - 0.5 = 1.75
    expected_iou = 1 - 0.5 / 1.75
    assert torch.isclose(soft_iou(_output(logits), target, weight), torch.tensor(expected_iou))
    # equal weights average the two frames
    both = torch.ones(1, 2)
    p1 = torch.sigmoid(torch.tensor([5.0, -5.0]))
    iou_1 = 1 - p1[1] / (p1.sum() + 1 - p1[1])
    assert torch.isclose(soft_iou(_output(logits), target, both), (torch.tensor(expected_iou) + iou_1) / 2)
    total, parts = compute_loss({"bce_logits": 1.0, "soft_iou": 1.0}, _output(logits), target, weight)
    assert torch.isclose(total, parts["bce_logits"] + parts["soft_iou"])
    with pytest.raises(ValueError, match="soft_iou: needs K=1"):
        soft_iou(_output(torch.zeros(1, 2, 3, 1, 2)), target, weight)
