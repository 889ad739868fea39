"""Every registered backbone against the interface the Lightning module relies on (parametrised over
the registry, as timm's tests are over ``list_models``), and the registry itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import get_class

import backbones
from backbones import BACKBONES, AVSBackbone, AVSOutput, UnknownComponentError
from backbones.losses import LOSS_TERMS

NAMES = backbones.available()
BACKBONE_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "backbone"


def test_builtin_backbones_are_found_without_a_list() -> None:
    assert {"tpavi", "avsegformer", "sama_avs"} <= set(NAMES)
    assert backbones.list() == NAMES == sorted(NAMES)
    for name, description in backbones.describe().items():
        assert description and "\n" not in description, name


def test_unknown_backbone_names_the_choices() -> None:
    with pytest.raises(UnknownComponentError, match=r"unknown backbone 'tpavii'; available: .*'tpavi'"):
        backbones.create("tpavii")
    with pytest.raises(KeyError):  # callers catching KeyError keep working
        backbones.create("nope")


def test_only_avs_backbones_register() -> None:
    with pytest.raises(TypeError, match="must subclass AVSBackbone"):
        backbones.register("not_a_backbone")(torch.nn.Linear)


@pytest.mark.parametrize("name", NAMES)
def test_backbone_implements_the_interface(name: str) -> None:
    cls = BACKBONES.get(name)
    assert issubclass(cls, AVSBackbone) and cls.name == name
    assert cls.recipes, f"{name} has no recipe"
    for dataset, recipe in cls.recipes.items():
        assert recipe.dataset == dataset
        assert set(recipe.loss_terms) <= set(LOSS_TERMS), (dataset, recipe.loss_terms)

    torch.manual_seed(0)
    net = backbones.create(name, dataset="s4", **cls.tiny_config).train()
    assert type(net) is cls and BACKBONES.name_of(type(net)) == name
    frames, audio = torch.randn(2, 5, 3, 64, 64), torch.randn(2, 5, 1, 96, 64)
    out = net(frames, audio, frame_valid=None)
    assert isinstance(out, AVSOutput)
    assert out.logits.shape == (2, 5, 1, 64, 64)
    assert out.aux["audio_embedding"].shape == (2, 5, net.audio_embedding_dim)
    if net.pooled_visual_dim is not None:
        assert out.aux["visual_pooled"].shape == (2, 5, net.pooled_visual_dim)
    else:
        assert "visual_pooled" not in out.aux

    # Frozen-visual behaviour: a recipe that freezes the visual part for some epochs needs one.
    visual = list(net.visual_parameters())
    if any(r.frozen_backbone_epochs > 0 for r in cls.recipes.values()):
        assert visual, f"{name} recipes freeze the visual part but visual_parameters() is empty"
    net.freeze_visual(True)
    assert not any(p.requires_grad for p in visual)
    net.freeze_visual(False)
    assert all(p.requires_grad for p in visual)
    out.logits.mean().backward()  # something trains
    assert any(p.grad is not None for p in net.parameters())


def test_backbone_defaults_declare_no_optional_features() -> None:
    """A minimal backbone gets documented defaults: no pooled visual feature, nothing to freeze."""

    class Minimal(AVSBackbone):
        pass

    net = Minimal()
    assert net.pooled_visual_dim is None and net.audio_embedding_dim == 128
    assert list(net.visual_parameters()) == [] and net.tiny_config == {}
    net.freeze_visual(True)  # a no-op, not an error


def test_every_backbone_has_one_config_whose_target_is_its_class() -> None:
    """``python train.py backbone=NAME`` selects ``configs/backbone/NAME.yaml``; its ``_target_`` is the
    class registered as NAME, and its keys are keywords of that class."""
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in BACKBONE_CONFIGS.glob("*.yaml")}
    assert sorted(configs) == NAMES
    for name, node in configs.items():
        cls = get_class(node.pop("_target_"))
        assert cls is BACKBONES.get(name), name
        assert "name" not in node and "dataset" not in node, name  # the file name names it; data gives dataset
        backbones.create(name, dataset="s4", **{**node, **cls.tiny_config})


def test_backbone_configs_that_cannot_be_built_say_why() -> None:
    from openavs_st.config import ConfigError, build_backbone

    with pytest.raises(ConfigError, match=r"nope\.Mine cannot be imported: .*No module named 'nope'.*PYTHONPATH"):
        build_backbone({"_target_": "nope.Mine"}, dataset="s4")
    with pytest.raises(ConfigError, match="needs _target_"):
        build_backbone({"preset": "tiny"})
    with pytest.raises(TypeError, match="built a Linear, not an AVSBackbone"):
        build_backbone({"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 2})
    net = build_backbone({"name": "tpavi", "preset": "tiny"}, dataset="s4")  # the name form of older configs
    assert type(net) is BACKBONES.get("tpavi")
