"""Export folders: weights, config, model card, ONNX, ``load_model`` and the checkpoint CLI."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn

import backbones
import openavs_st
from backbones.base import AVSOutput
from backbones.encoders.vggish import VGGish
from openavs_st.data.clip import Clip
from openavs_st.data.store import StoreWriter
from openavs_st.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from openavs_st.export import ExportError, export_module, export_onnx
from openavs_st.export import main as export_main
from openavs_st.module import AVSLitModule, SimilarityHead

SIZE = 64
SECRET = "sk-test-0123456789abcdefXYZ"
METRICS = {"test/miou_avsbench": 0.4321, "test/f_avsbench": 0.5432, "test/f_pooled": 0.5511}


def tiny_module(name: str) -> AVSLitModule:
    torch.manual_seed(0)
    return AVSLitModule(backbone={"name": name, "preset": "tiny"}, dataset="s4", recipe_overrides={"input_size": SIZE})


def random_inputs(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 5, 3, SIZE, SIZE, generator=generator),
        torch.randn(batch, 5, 1, 96, 64, generator=generator),
    )


def training_cfg(root: Path) -> OmegaConf:
    return OmegaConf.create(
        {
            "data": {"name": "synthetic", "root": str(root / "synthetic_data"), "input_size": SIZE},
            "llm": {"provider": "openai", "api_key": SECRET, "base_url": "https://example.invalid/v1"},
            "seed": 7,
        }
    )


@pytest.fixture(scope="module", params=["tpavi", "avsegformer", "sama_avs"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[AVSLitModule, Path]:
    module = tiny_module(request.param).eval()
    root = tmp_path_factory.mktemp(f"export_{request.param}")
    out = export_module(module, root / "export", cfg=training_cfg(root), metrics=METRICS, onnx=True)
    return module, out


def test_load_model_gives_identical_logits(exported: tuple[AVSLitModule, Path]) -> None:
    module, out = exported
    net = openavs_st.load_model(out)
    assert type(net) is type(module.net) and not net.training
    frames, audio = random_inputs(2, seed=11)
    with torch.no_grad():
        assert torch.equal(net(frames, audio).logits, module.net(frames, audio).logits)


def test_onnx_matches_pytorch_in_onnxruntime(exported: tuple[AVSLitModule, Path]) -> None:
    module, out = exported
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["frames", "audio"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    frames, audio = random_inputs(1, seed=12)  # not an input the export's own check used
    with torch.no_grad():
        expected = module.net(frames, audio).logits.numpy()
    (got,) = session.run(["logits"], {"frames": frames.numpy(), "audio": audio.numpy()})
    assert got.shape == expected.shape == (1, 5, 1, SIZE, SIZE)
    assert np.abs(got - expected).max() <= 1e-4
    onnx_info = yaml.safe_load((out / "config.yaml").read_text())["onnx"]
    assert onnx_info["opset"] >= 17 and onnx_info["max_abs_diff_vs_pytorch"] <= 1e-4


def test_config_rebuilds_the_model(exported: tuple[AVSLitModule, Path]) -> None:
    module, out = exported
    config = yaml.safe_load((out / "config.yaml").read_text())
    cls = type(module.net)
    assert config["backbone"] == {
        "name": module.backbone_name, "_target_": f"{cls.__module__}.{cls.__qualname__}", "preset": "tiny"
    }
    assert config["dataset"] == "s4"
    assert config["recipe"] == json.loads(json.dumps(dataclasses.asdict(module.recipe)))
    assert config["input"]["size"] == [SIZE, SIZE] and config["input"]["num_frames"] == 5
    assert config["input"]["mean"] == list(IMAGENET_MEAN) and config["input"]["std"] == list(IMAGENET_STD)
    assert config["openavs_st_version"] == openavs_st.__version__
    assert config["training"]["data"] == {"name": "synthetic", "root_name": "synthetic_data"}
    assert json.loads((out / "metrics.json").read_text()) == METRICS
    weights = load_file(str(out / "model.safetensors"))
    assert set(weights) == {f"net.{k}" for k in module.net.state_dict()}
    vggish = [name for name, m in module.net.named_modules() if isinstance(m, VGGish)]
    assert vggish and all(any(k.startswith(f"net.{n}.") for k in weights) for n in vggish)  # self-contained


def test_exports_written_with_the_backbone_name_only_still_load(
    plain_export: tuple[AVSLitModule, Path], tmp_path: Path
) -> None:
    """Export folders from before ``_target_`` configs name the backbone only: the registry rebuilds it."""
    module, folder = plain_export
    old = damaged_copy(folder, tmp_path / "old")
    config = yaml.safe_load((old / "config.yaml").read_text())
    del config["backbone"]["_target_"]
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    frames, audio = random_inputs(1, seed=4)
    with torch.no_grad():
        assert torch.equal(openavs_st.load_model(old)(frames, audio).logits, module.net(frames, audio).logits)
    config["backbone"]["name"] = "tpavii"
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(KeyError, match=r"unknown backbone 'tpavii'; available: .*'tpavi'"):
        openavs_st.load_model(old)


def test_model_card_lists_metrics_with_modes(exported: tuple[AVSLitModule, Path]) -> None:
    module, out = exported
    card = (out / "README.md").read_text()
    for name, value in METRICS.items():
        assert re.search(rf"`{re.escape(name)}` \| {value:.4f} \| \S", card), name
    assert f"group of {module.recipe.test_batch_frames} consecutive test frames" in card
    assert "independent of batch size" in card  # f_pooled's mode
    assert f"`{module.backbone_name}`" in card and "openavs_st.load_model" in card
    assert "`synthetic` (folder `synthetic_data`)" in card


def test_no_secret_reaches_any_exported_file(exported: tuple[AVSLitModule, Path]) -> None:
    _, out = exported
    files = sorted(p for p in out.iterdir() if p.is_file())
    assert {p.name for p in files} == {"model.safetensors", "config.yaml", "metrics.json", "README.md", "model.onnx"}
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path.name
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["training"]["config"]["llm"]["api_key"] == "***"


@pytest.fixture(scope="module")
def plain_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[AVSLitModule, Path]:
    """tiny TPAVI with a robust similarity head, exported without ONNX, cfg or metrics."""
    module = tiny_module("tpavi").eval()
    module.similarity = SimilarityHead(audio_dim=128, visual_dim=16)
    return module, export_module(module, tmp_path_factory.mktemp("plain") / "export")


def test_similarity_head_is_exported_under_its_prefix(plain_export: tuple[AVSLitModule, Path]) -> None:
    module, out = plain_export
    weights = load_file(str(out / "model.safetensors"))
    head = {k[len("similarity."):]: v for k, v in weights.items() if k.startswith("similarity.")}
    assert set(head) == set(module.similarity.state_dict())
    assert all(torch.equal(head[k], v) for k, v in module.similarity.state_dict().items())
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["similarity_head"] == {"audio_dim": 128, "visual_dim": 16}
    assert json.loads((out / "metrics.json").read_text()) == {}
    frames, audio = random_inputs(1, seed=3)
    with torch.no_grad():  # load_model returns the backbone; the head's keys are expected, not extra
        assert torch.equal(openavs_st.load_model(out)(frames, audio).logits, module.net(frames, audio).logits)


def damaged_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_model_card_names_the_pseudo_label_labeler(plain_export: tuple[AVSLitModule, Path], tmp_path: Path) -> None:
    module, _ = plain_export
    store = tmp_path / "my_store"
    writer = StoreWriter(store, labeler="openavs_lite", config={"alm": "clap", "llm": {"api_key": SECRET}})
    frames = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    for clip_id in ("a", "b"):
        writer.write(Clip(clip_id, frames, np.zeros(16000, np.float32), 16000), np.zeros((5, 8, 8), bool))
    evaluation = {"name": "avsbench_s4", "root": "/data/avsbench_data"}
    cfg = {"data": {"name": "pseudo", "root": str(store), "eval": evaluation}}
    out = export_module(module, tmp_path / "export", cfg=cfg)
    card = (out / "README.md").read_text()
    assert f"pseudo-labels by `openavs_lite` (config hash `{writer.config_hash}`, 2 clips)" in card
    assert "Validation/test: `avsbench_s4` (folder `avsbench_data`)" in card
    labelers = yaml.safe_load((out / "config.yaml").read_text())["training"]["data"]["labelers"]
    assert labelers == [{"labeler": "openavs_lite", "config_hash": writer.config_hash, "clips": 2}]


def test_load_model_names_missing_files(plain_export: tuple[AVSLitModule, Path], tmp_path: Path) -> None:
    _, folder = plain_export
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        openavs_st.load_model(tmp_path / "nowhere")
    no_weights = damaged_copy(folder, tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        openavs_st.load_model(no_weights)
    no_config = damaged_copy(folder, tmp_path / "no_config")
    (no_config / "config.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="config.yaml is missing"):
        openavs_st.load_model(no_config)


def test_load_model_names_mismatched_keys_and_shapes(plain_export: tuple[AVSLitModule, Path], tmp_path: Path) -> None:
    _, folder = plain_export
    weights = load_file(str(folder / "model.safetensors"))
    removed = "net.output_conv.4.bias"
    renamed = dict(weights)
    renamed["net.extra.weight"] = renamed.pop(removed)
    bad_keys = damaged_copy(folder, tmp_path / "bad_keys")
    save_file(renamed, str(bad_keys / "model.safetensors"))
    with pytest.raises(KeyError, match=r"missing \[net\.output_conv\.4\.bias\], unexpected \[net\.extra\.weight\]"):
        openavs_st.load_model(bad_keys)

    reshaped = dict(weights)
    reshaped[removed] = torch.zeros(3)
    bad_shape = damaged_copy(folder, tmp_path / "bad_shape")
    save_file(reshaped, str(bad_shape / "model.safetensors"))
    with pytest.raises(ValueError, match=r"net\.output_conv\.4\.bias has shape \(3,\), .* expects \(1,\)"):
        openavs_st.load_model(bad_shape)


def test_import_is_lazy_and_load_model_needs_no_lightning(plain_export: tuple[AVSLitModule, Path]) -> None:
    _, folder = plain_export
    code = (
        "import sys, openavs_st\n"
        "assert 'torch' not in sys.modules, 'import openavs_st loaded torch'\n"
        f"net = openavs_st.load_model({str(folder)!r})\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')]\n"
        "assert not heavy, heavy\n"
        "print(type(net).__name__, net.training)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["TPAVI", "False"]


class _ValueBakingNet(nn.Module):
    """Scales by a Python float read from the input: a trace freezes it, so ONNX is wrong on new input."""

    def forward(self, frames: torch.Tensor, audio: torch.Tensor) -> AVSOutput:
        scale = float(audio.abs().max())
        return AVSOutput(logits=frames.mean(2, keepdim=True) * scale + audio.mean())


def test_onnx_export_fails_loudly_when_the_graph_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="onnxruntime output differs from PyTorch"):
        export_onnx(_ValueBakingNet(), path, num_frames=5, size=(8, 8))
    assert not path.exists()


def test_sama_avs_onnx_needs_the_encoder_size(tmp_path: Path) -> None:
    net = backbones.create("sama_avs", preset="tiny", dataset="s4").eval()  # SAM encoder size 64
    with pytest.raises(ExportError, match=r"SAMAAVS failed: .*_upsample_bilinear2d_aa.*img_size"):
        export_onnx(net, tmp_path / "model.onnx", num_frames=5, size=(32, 32))


def test_export_cli_from_lightning_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "from_ckpt"
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text(json.dumps({"test/miou_avsbench": 0.25}))
    assert export_main([f"ckpt={tiny_checkpoint}", f"out={out}", f"metrics={metrics_file}"]) == 0
    module = AVSLitModule.load_from_checkpoint(tiny_checkpoint, map_location="cpu", weights_only=True).eval()
    config = yaml.safe_load((out / "config.yaml").read_text())
    # the frame size comes from the run's config_resolved.yaml next to checkpoints/
    assert config["input"]["size"] == [64, 64] and config["training"]["data"]["name"] == "avsbench_s4"
    assert json.loads((out / "metrics.json").read_text()) == {"test/miou_avsbench": 0.25}
    frames, audio = random_inputs(1, seed=5)
    with torch.no_grad():
        assert torch.equal(openavs_st.load_model(out)(frames, audio).logits, module.net(frames, audio).logits)


def test_export_cli_usage_and_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert export_main(["out=x"]) == 2
    assert export_main([f"ckpt={tmp_path / 'none.ckpt'}", f"out={tmp_path / 'o'}"]) == 1
    assert f"checkpoint not found: {tmp_path / 'none.ckpt'}" in capsys.readouterr().err
    cli = subprocess.run([sys.executable, "-m", "openavs_st.export", "out=x"], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 2 and "ckpt=PATH out=DIR" in cli.stderr and "Warning" not in cli.stderr


def test_export_cli_from_a_checkpoint_whose_initial_weight_files_are_gone(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A run that started from local weight files (backbone.pretrained_*) records them in the
    checkpoint's hyper-parameters; exporting it elsewhere must not need those files (the checkpoint
    holds every weight), and the export keeps them as provenance."""
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    gone = str(tmp_path / "elsewhere" / "vggish-10086976.pth")
    ckpt["hyper_parameters"]["backbone"] = {**ckpt["hyper_parameters"]["backbone"], "pretrained_vggish": gone}
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_checkpoint.parent.parent / "config_resolved.yaml", run / "config_resolved.yaml")
    moved = run / "checkpoints" / "last.ckpt"
    torch.save(ckpt, moved)

    out = tmp_path / "export"
    assert export_main([f"ckpt={moved}", f"out={out}"]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["training"]["initial_weights"] == {"pretrained_vggish": gone}
    assert "pretrained_vggish" not in config["backbone"]
    reference = AVSLitModule.load_from_checkpoint(tiny_checkpoint, map_location="cpu", weights_only=True).eval()
    frames, audio = random_inputs(1, seed=6)
    with torch.no_grad():
        assert torch.equal(openavs_st.load_model(out)(frames, audio).logits, reference.net(frames, audio).logits)


def test_export_records_the_trained_clip_length(plain_export: tuple[AVSLitModule, Path], tmp_path: Path) -> None:
    """AVSS-binary trains 10-frame clips with the MS3 recipe (T=5): inference must use T=10 windows."""
    module, _ = plain_export
    cfg = {"data": {"name": "avsbench_avss_binary", "root": "/data/avss", "num_frames": 10}}
    out = export_module(module, tmp_path / "export", cfg=cfg)
    assert yaml.safe_load((out / "config.yaml").read_text())["input"]["num_frames"] == 10
    plain = yaml.safe_load((export_module(module, tmp_path / "plain")).joinpath("config.yaml").read_text())
    assert plain["input"]["num_frames"] == module.recipe.num_frames == 5
