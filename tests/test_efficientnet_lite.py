"""EfficientNet-Lite0 (backbones/encoders/efficientnet_lite.py): the real ImageNet checkpoint's key layout,
strict loading errors naming key and file, TF-SAME padding, the input conversion, ImageNet classification of
a real photograph, and TPAVI with it as visual encoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from offline_assets import farm_photo, lite0_checkpoint

import backbones
from backbones.encoders import build_visual_encoder, read_checkpoint
from backbones.encoders.efficientnet_lite import (
    ENCODER_CHANNELS,
    Conv2dSame,
    EfficientNetLite0,
    EfficientNetLite0Encoder,
    imagenet_categories,
)

DOG_BREEDS = range(151, 269)  # ImageNet-1k: Chihuahua .. Mexican hairless


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    return read_checkpoint(lite0_checkpoint())


@pytest.fixture(scope="module")
def classifier(state_dict) -> EfficientNetLite0:
    net = EfficientNetLite0(input_norm="unit")
    net.load_official(state_dict)
    return net.eval()


def test_checkpoint_key_layout_matches_the_network(state_dict) -> None:
    net = EfficientNetLite0()
    assert set(state_dict) == set(net.state_dict())  # every key, no renaming
    assert len(state_dict) == 296 and len(net._blocks) == 16
    assert sum(p.numel() for p in net.parameters()) == 4_652_008
    assert "_blocks.0._expand_conv.weight" not in state_dict  # expand ratio 1: no expansion
    assert tuple(state_dict["_blocks.3._depthwise_conv.weight"].shape) == (144, 1, 5, 5)
    assert tuple(state_dict["_fc.weight"].shape) == (1000, 1280)


def test_encoder_loads_the_file_without_its_classifier(tmp_path) -> None:
    encoder = build_visual_encoder("efficientnet_lite0")
    assert isinstance(encoder, EfficientNetLite0Encoder) and encoder.out_channels == ENCODER_CHANNELS == [24, 40, 112, 1280]
    encoder.load_pretrained(lite0_checkpoint())
    assert encoder.weights_loaded and not hasattr(encoder, "_fc")
    maps = encoder.eval()(torch.zeros(2, 3, 224, 224))
    assert [tuple(m.shape) for m in maps] == [(2, 24, 56, 56), (2, 40, 28, 28), (2, 112, 14, 14), (2, 1280, 7, 7)]
    assert [tuple(m.shape[-2:]) for m in encoder(torch.zeros(1, 3, 100, 130))] == [(25, 33), (13, 17), (7, 9), (4, 5)]
    assert build_visual_encoder("efficientnet_lite0", "tiny").out_channels == ENCODER_CHANNELS


def test_wrong_or_missing_key_is_named_with_the_file(state_dict, tmp_path) -> None:
    missing = dict(state_dict)
    del missing["_blocks.3._bn1.running_var"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(KeyError, match=r"missing.pth.*_blocks\.3\._bn1\.running_var"):
        EfficientNetLite0().load_pretrained(tmp_path / "missing.pth")
    torch.save({**state_dict, "_blocks.16._bn0.weight": torch.zeros(3)}, tmp_path / "extra.pth")
    with pytest.raises(KeyError, match=r"extra.pth: unexpected key\(s\) _blocks\.16\._bn0\.weight"):
        EfficientNetLite0().load_pretrained(tmp_path / "extra.pth")
    torch.save({**state_dict, "_conv_head.weight": torch.zeros(1280, 320, 3, 3)}, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"shape.pth: shape mismatch for '_conv_head.weight'"):
        EfficientNetLite0().load_pretrained(tmp_path / "shape.pth")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        EfficientNetLite0().load_pretrained(tmp_path / "nowhere.pth")


def test_same_padding_is_tensorflows() -> None:
    torch.manual_seed(0)
    conv = Conv2dSame(2, 3, 3, stride=2, bias=False)
    x = torch.randn(1, 2, 8, 7)
    # TF SAME, stride 2, kernel 3: out = ceil(i/2); total padding 1 (8 rows, extra at the bottom) and
    # 2 (7 columns, one each side)
    expected = F.conv2d(F.pad(x, (1, 1, 0, 1)), conv.weight, stride=2)
    assert torch.allclose(conv(x), expected) and conv(x).shape[-2:] == (4, 4)


def test_imagenet_normalised_input_equals_unit_input(classifier) -> None:
    encoder = EfficientNetLite0Encoder()  # input_norm="imagenet"
    encoder.load_official(classifier.state_dict())
    encoder.eval()
    rgb = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ours, theirs = encoder((rgb - mean) / std), classifier.stages(rgb)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_classifies_a_real_photograph(classifier) -> None:
    photo = farm_photo("dog", 224)  # GCompris: a German shepherd
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        probs = classifier(x).softmax(-1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert any(index in DOG_BREEDS for index in top5)
    assert imagenet_categories()[top5[0]] == "German shepherd" and probs[top5[0]] > 0.5


def test_tpavi_runs_with_the_pretrained_encoder_at_224() -> None:
    path = lite0_checkpoint()
    net = backbones.create("tpavi", dataset="s4", preset="tiny", visual_encoder="efficientnet_lite0", pretrained_visual=str(path))
    assert net.visual_encoder.weights_loaded and net.pooled_visual_dim == 1280
    stem = read_checkpoint(path)["_conv_stem.weight"]
    assert torch.equal(net.visual_encoder._conv_stem.weight.detach(), stem)
    frames, audio = torch.randn(1, 5, 3, 224, 224), torch.randn(1, 5, 1, 96, 64)
    with torch.no_grad():
        out = net.eval()(frames, audio)
    assert out.logits.shape == (1, 5, 1, 224, 224) and torch.isfinite(out.logits).all()
    assert out.aux["visual_pooled"].shape == (1, 5, 1280)
    with pytest.raises(ValueError, match="no official TPAVI checkpoint exists for visual_encoder='efficientnet_lite0'"):
        net.load_official({}, allow_random_vggish=True)
