"""A backbone from outside the repository is one Python file and one yaml: ``python train.py
backbone=mine`` trains it when its module is importable (PYTHONPATH) and its config folder is on Hydra's
search path (``hydra.searchpath=[file://...]``), and the export it writes loads back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from openavs_st.data.synthetic import write_synthetic

REPO = Path(__file__).resolve().parents[1]

BACKBONE_FILE = '''
"""A tiny plug-in backbone: per-pixel visual features gated by a linear audio embedding."""

import torch
from torch import nn

import backbones
from backbones import AVSBackbone, AVSOutput, Recipe


@backbones.register("mine")
class Mine(AVSBackbone):
    """Mine: a per-pixel conv gated by the audio (plug-in example)."""

    recipes = {
        "s4": Recipe(dataset="s4", optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=1, batch_size=2,
                     input_size=32, loss_terms={"bce": 1.0}, gt_frames="first", test_batch_frames=10),
    }

    def __init__(self, *, dataset: str = "s4", width: int = 8) -> None:
        super().__init__()
        self.audio_embedding_dim = width
        self.pooled_visual_dim = width
        self.visual = nn.Conv2d(3, width, 3, padding=1)
        self.audio = nn.Linear(96 * 64, width)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, frames, audio, *, frame_valid=None):
        b, t = frames.shape[:2]
        visual = self.visual(frames.flatten(0, 1))
        embedding = self.audio(audio.flatten(2))  # [B, T, width]
        logits = self.head(torch.relu(visual * embedding.flatten(0, 1)[:, :, None, None]))
        return AVSOutput(
            logits=logits.unflatten(0, (b, t)),
            aux={"audio_embedding": embedding, "visual_pooled": visual.mean((2, 3)).unflatten(0, (b, t))},
        )
'''

BACKBONE_YAML = """\
# A plug-in backbone: the class is found through PYTHONPATH.
_target_: my_backbone.Mine
width: 8
"""


def test_plugin_backbone_trains_through_the_cli_and_its_export_loads(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    (plugin / "configs" / "backbone").mkdir(parents=True)
    (plugin / "my_backbone.py").write_text(BACKBONE_FILE)
    (plugin / "configs" / "backbone" / "mine.yaml").write_text(BACKBONE_YAML)
    data = tmp_path / "data"
    write_synthetic(data, ("s4",), splits={"train": 4, "val": 2, "test": 2}, size=32, seed=0)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "train.py", "backbone=mine", "data=synthetic", f"data.root={data}", "data.input_size=32",
           "trainer=cpu", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger=csv",
           "robust.lambda_sim=0.5", f"hydra.searchpath=[file://{plugin / 'configs'}]",
           f"paths.log_dir={tmp_path / 'logs'}", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    export = run_dir / "export"
    config = yaml.safe_load((export / "config.yaml").read_text())
    assert config["backbone"] == {"name": "mine", "_target_": "my_backbone.Mine", "width": 8}
    assert config["similarity_head"] == {"audio_dim": 8, "visual_dim": 8}  # declared widths, no getattr
    metrics = json.loads((export / "metrics.json").read_text())
    assert 0.0 <= metrics["test/miou_avsbench"] <= 1.0
    assert "`mine`" in (export / "README.md").read_text()

    code = textwrap.dedent(f"""
        import openavs_st, torch
        net = openavs_st.load_model({str(export)!r})
        print(type(net).__name__, tuple(net(torch.zeros(1, 5, 3, 32, 32), torch.zeros(1, 5, 1, 96, 64)).logits.shape))
    """)
    loaded = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == ["Mine", "(1,", "5,", "1,", "32,", "32)"]


def test_unknown_backbone_option_lists_the_configs(tmp_path: Path) -> None:
    """Without the search path the option does not exist, and Hydra names the available ones."""
    cmd = [sys.executable, "train.py", "backbone=mine", "data=synthetic", f"hydra.run.dir={tmp_path / 'r'}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Could not find 'backbone/mine'" in proc.stderr and "tpavi" in proc.stderr
