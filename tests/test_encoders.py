"""Shared encoders: VGGish, PVT-v2-B5 and ResNet-50 shapes, sizes, and official weight layouts."""

from __future__ import annotations

import logging

import pytest
import torch
from official_layouts import meta_state_dict, random_state_dict, read_layout

from backbones.encoders import build_visual_encoder, read_checkpoint
from backbones.encoders.pvt import build_pvt_v2_b5, convert_official_pvt_keys, to_official_pvt_keys
from backbones.encoders.resnet import build_resnet50, convert_b2_resnet_keys
from backbones.encoders.vggish import VGGish


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def shapes(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


# ---------------------------------------------------------------- VGGish


def test_vggish_full_size_and_official_layout() -> None:
    with torch.device("meta"):
        model = VGGish()
    assert n_params(model) == 72_141_184  # torchvggish VGGish (harritaylor/torchvggish), the AVSBench audio encoder
    assert shapes(model.state_dict()) == read_layout("vggish.tsv")


def test_vggish_output_is_128d_nonnegative_and_frozen() -> None:
    model = VGGish(tiny=True)
    model.train()  # a parent calling .train() must not unfreeze it
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    x = torch.randn(6, 1, 96, 64, requires_grad=True)
    emb = model(x)
    assert emb.shape == (6, 128)
    assert emb.min() >= 0  # final ReLU, no PCA
    assert emb.grad_fn is None  # run under no_grad


def test_vggish_flattens_channels_last() -> None:
    """Embedding input index c is (time 0, mel 0, channel c) in torchvggish's transposed flatten."""
    torch.manual_seed(0)
    model = VGGish(tiny=True)
    x = torch.randn(3, 1, 96, 64)
    with torch.no_grad():
        features = model.features(x)  # [3, C, 6, 4], non-negative
    # a channel c >= 1 whose (time 0, mel 0) value is not zero for every example
    c = next(c for c in range(1, features.shape[1]) if features[:, c, 0, 0].abs().sum() > 0)
    with torch.no_grad():
        for layer in (model.embeddings[0], model.embeddings[2], model.embeddings[4]):
            layer.weight.zero_()
            layer.bias.zero_()
        model.embeddings[0].weight[0, c] = 1.0
        model.embeddings[2].weight[0, 0] = 1.0
        model.embeddings[4].weight[0, 0] = 1.0
    assert torch.equal(model(x)[:, 0], features[:, c, 0, 0])
    # A channel-first flatten would have read index c as (channel c // 24, time c % 24 // 4, mel c % 4).
    assert not torch.equal(features[:, c, 0, 0], features[:, c // 24, c % 24 // 4, c % 4])


def test_vggish_rejects_wrong_input_shape() -> None:
    with pytest.raises(ValueError, match=r"\[N, 1, 96, 64\]"):
        VGGish(tiny=True)(torch.randn(2, 96, 64))


def test_vggish_loads_official_file_and_reports_bad_keys(tmp_path) -> None:
    # Official names at tiny width (the full layout is checked against vggish.tsv above).
    model = VGGish(tiny=True)
    state = random_state_dict(shapes(model.state_dict()))
    path = tmp_path / "vggish-10086976.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # a DataParallel prefix is stripped
    model.load_pretrained(path)
    assert torch.equal(model.features[11].weight, state["features.11.weight"])
    assert torch.equal(model.embeddings[4].bias, state["embeddings.4.bias"])

    with pytest.raises(KeyError, match="features.99.weight"):
        model.load_official({**state, "features.99.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="embeddings.2.bias"):
        model.load_official({k: v for k, v in state.items() if k != "embeddings.2.bias"})
    bad = dict(state, **{"embeddings.4.weight": torch.zeros(64, 64)})
    with pytest.raises(ValueError, match=r"embeddings\.4\.weight.*\(64, 64\).*\(128, 64\)"):
        model.load_official(bad)


def test_read_checkpoint_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_checkpoint(tmp_path / "nope.pth")
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="list.pth"):
        read_checkpoint(path)
    # a checkpoint with a pickled class: torch's reason, not its advice to load it unsafely
    from fractions import Fraction

    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Fraction(1, 2)}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError) as info:
        read_checkpoint(tmp_path / "pickled.pth")
    message = str(info.value)
    assert "pickled.pth" in message and "fractions.Fraction" in message and "\n" not in message
    assert "weights_only` set to `False" not in message and "add_safe_globals" not in message


# ---------------------------------------------------------------- PVT-v2-B5


def test_pvt_full_size_drop_path_and_norm_eps() -> None:
    with torch.device("meta"):
        model = build_pvt_v2_b5()
    assert n_params(model) == 81_443_008  # PVT-v2-B5 (whai362/PVT), as in the AVSBench and AVSegFormer encoders
    assert model.out_channels == [64, 128, 320, 512]
    blocks = [b for stage in model.stages for b in stage.blocks]
    assert len(blocks) == 52
    # whai362 stochastic-depth rule: linspace(0, 0.1, 52) over all blocks.
    assert isinstance(blocks[0].drop_path1, torch.nn.Identity)
    assert blocks[1].drop_path1.drop_prob == pytest.approx(0.1 / 51)
    assert blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    # LayerNorm eps 1e-6 in blocks and stage norms, default 1e-5 in the patch embeddings.
    assert blocks[0].norm1.eps == 1e-6 and model.stages[2].norm.eps == 1e-6
    assert model.patch_embed.norm.eps == 1e-5


def test_pvt_official_names_map_onto_timm_model() -> None:
    layout = read_layout("pvt_v2_b5.tsv")
    assert len(layout) == 1054  # 1052 + ImageNet head
    with torch.device("meta"):
        model = build_pvt_v2_b5()
    converted = convert_official_pvt_keys(meta_state_dict(layout))
    assert shapes(converted) == shapes(model.state_dict())
    model.load_official(meta_state_dict(layout))  # strict: names and shapes
    official_no_head = {k: v for k, v in layout.items() if not k.startswith("head.")}
    assert shapes(to_official_pvt_keys(model.state_dict())) == official_no_head


def test_pvt_official_values_land_in_the_right_parameters() -> None:
    model = build_pvt_v2_b5(preset="tiny")
    official = random_state_dict(shapes(to_official_pvt_keys(model.state_dict())))
    model.load_official(official)
    assert torch.equal(model.patch_embed.proj.weight, official["patch_embed1.proj.weight"])
    assert torch.equal(model.stages[2].downsample.norm.bias, official["patch_embed3.norm.bias"])
    assert torch.equal(model.stages[1].blocks[0].attn.kv.weight, official["block2.0.attn.kv.weight"])
    assert torch.equal(model.stages[0].blocks[0].attn.sr.weight, official["block1.0.attn.sr.weight"])
    assert torch.equal(model.stages[3].blocks[0].mlp.dwconv.bias, official["block4.0.mlp.dwconv.dwconv.bias"])
    assert torch.equal(model.stages[3].norm.weight, official["norm4.weight"])


def test_pvt_unknown_key_is_named() -> None:
    with pytest.raises(KeyError, match="block1.0.attn.qq.weight"):
        convert_official_pvt_keys({"block1.0.attn.qq.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="head.weight"):
        to_official_pvt_keys({"head.weight": torch.zeros(1)})


def test_pvt_tiny_outputs_four_strided_maps() -> None:
    model = build_pvt_v2_b5(preset="tiny")
    maps = model(torch.randn(2, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(model.out_channels, (4, 8, 16, 32))
    ]


# ---------------------------------------------------------------- ResNet-50


def test_resnet_full_size_and_torchvision_layout() -> None:
    with torch.device("meta"):
        model = build_resnet50()
    assert n_params(model) == 23_508_032  # B2_ResNet 45,571,136 minus the 22,063,104 dead branch
    layout = read_layout("resnet50_torchvision.tsv")
    model.load_torchvision(meta_state_dict(layout))  # fc dropped, the rest strict


def test_resnet_b2_names_drop_dead_branch_with_log(caplog) -> None:
    b2 = {
        k[len("resnet.") :]: v
        for k, v in read_layout("tpavi_resnet50.tsv").items()
        if k.startswith("resnet.")
    }
    with caplog.at_level(logging.INFO, logger="backbones.encoders"):
        converted = convert_b2_resnet_keys(meta_state_dict(b2))
    assert "dropped 174 tensors" in caplog.text  # layer3_2 (114) + layer4_2 (60)
    with torch.device("meta"):
        model = build_resnet50()
    assert shapes(converted) == shapes(model.state_dict())


def test_resnet_b2_values_land_and_tiny_shapes() -> None:
    model = build_resnet50(preset="tiny")
    ours = random_state_dict(shapes(model.state_dict()))
    b2 = {k.replace("layer3.", "layer3_1.").replace("layer4.", "layer4_1."): v for k, v in ours.items()}
    b2["layer3_2.0.conv1.weight"] = torch.zeros(1)  # dead branch: accepted, ignored
    model.load_official(b2)
    assert torch.equal(model.layer3[0].downsample[0].weight, b2["layer3_1.0.downsample.0.weight"])
    assert torch.equal(model.layer4[0].bn3.running_var, b2["layer4_1.0.bn3.running_var"])
    maps = model(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [
        (1, 256, 16, 16),
        (1, 512, 8, 8),
        (1, 1024, 4, 4),
        (1, 2048, 2, 2),
    ]
    with pytest.raises(KeyError, match="layer5.0.conv1.weight"):
        model.load_official({**b2, "layer5.0.conv1.weight": torch.zeros(1)})


def test_build_visual_encoder_dispatch_and_errors() -> None:
    assert build_visual_encoder("resnet50", "tiny").out_channels == [256, 512, 1024, 2048]
    assert build_visual_encoder("pvt_v2_b5", "tiny").out_channels == [16, 32, 40, 64]
    with pytest.raises(ValueError, match="swin"):
        build_visual_encoder("swin", "full")
    with pytest.raises(ValueError, match="huge"):
        build_visual_encoder("resnet50", "huge")
