"""The component core as a new contributor meets it: every role's registry checked against its interface and
its config group, and new components added from outside the repository - one Python file and one yaml
each, in a temporary package - run through ``python -m pseudolabel`` without editing any file here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from openavs_st.data.store import PseudoLabelStore, load_records
from openavs_st.data.synthetic import write_synthetic
from openavs_st.registry import Registry, UnknownComponentError
from pseudolabel.components import ROLES, ComponentConfigError, build

REPO_ROOT = Path(__file__).resolve().parents[1]
GROUPS = REPO_ROOT / "configs" / "pseudolabel"


# --- the registry mechanism -------------------------------------------------------------------------


def test_registry_registers_lists_describes_and_names_the_choices() -> None:
    widgets: Registry = Registry("widget")

    @widgets.register("round")
    class Round:
        """A round widget.

        More text that the listing leaves out."""

        def __init__(self, size: int = 1) -> None:
            self.size = size

    @widgets.register("square", description="four equal sides")
    class Square:
        pass

    assert widgets.names() == ["round", "square"] and "round" in widgets and len(widgets) == 2
    assert widgets.describe() == {"round": "A round widget.", "square": "four equal sides"}
    assert Round.name == "round" and widgets.name_of(Square) == "square"
    assert widgets.create("round", size=3).size == 3
    with pytest.raises(UnknownComponentError, match=r"unknown widget 'oval'; available: \['round', 'square'\]"):
        widgets.get("oval")

    class Other:
        pass

    with pytest.raises(ValueError, match="'round' is registered twice"):
        widgets.register("round")(Other)


# --- every built-in component: registered, configured, and matching its role ---------------------------


def _group_files(role: str) -> dict[str, Path]:
    return {path.stem: path for path in sorted((GROUPS / role).glob("*.yaml"))}


def _target_of(path: Path) -> str:
    node = OmegaConf.load(path)
    if "_target_" in node:
        return str(node["_target_"])
    (inner,) = node.values()  # an ALM file wraps its options in its own name
    assert list(node.keys()) == [path.stem], f"{path}: the single top-level key must be the file name"
    return str(inner["_target_"])


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_registered_component_has_a_config_and_every_config_a_registered_class(role: str) -> None:
    from hydra.utils import get_class

    spec = ROLES[role]
    files = _group_files(role)
    # every registered class has its file; a file may also configure a registered class under another
    # name (llm/smollm2.yaml: the hf translator with a GGUF checkpoint)
    missing = set(spec.registry.names()) - set(files)
    assert not missing, f"configs/pseudolabel/{role}/ lacks a file for {sorted(missing)}"
    for name, path in files.items():
        cls = get_class(_target_of(path))
        registered = spec.registry.name_of(cls)
        assert registered is not None, f"{path}: _target_ {cls.__name__} is not a registered {role} class"
        if name in spec.registry:
            assert spec.registry.get(name) is cls, f"{path}: _target_ is not the class registered as {name!r}"
        for member in ("load", "provenance", "loaded"):
            assert hasattr(cls, member), f"{cls.__name__} lacks {member}"
        for method in [m for m in vars(spec.interface) if not m.startswith("_")]:
            assert callable(getattr(cls, method, None)), f"{cls.__name__} lacks {method}() of the {role} role"
        assert spec.registry.describe()[registered], f"{cls.__name__} has no docstring line for --list"


def test_build_names_the_key_and_the_problem() -> None:
    with pytest.raises(ComponentConfigError, match=r"labeler.grounder has neither _target_ nor name.*grounding_dino"):
        build("grounder", {"model": "x"})
    with pytest.raises(ComponentConfigError, match=r"labeler.alm.x: unknown audio model 'nope'; available"):
        build("alm", {"name": "nope"}, "labeler.alm.x")
    with pytest.raises(ComponentConfigError, match=r"labeler.segmenter: .*unexpected keyword argument 'colour'"):
        build("segmenter", {"name": "sam2", "colour": "red"})
    with pytest.raises(ComponentConfigError, match=r"labeler.grounder: .*not a grounder: it lacks \['detect'"):
        build("grounder", {"_target_": "collections.OrderedDict"})
    none = build("llm", {"_target_": "pseudolabel.llm.base.PassthroughTranslator", "strategy": "prompt_frame"})
    assert none.name == "none" and none.ignored_options == ["strategy"]


def test_list_prints_every_component_by_role() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pseudolabel", "--list"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for role in ROLES.values():
        header = next(i for i, line in enumerate(lines) if line.startswith(f"{role.key}: "))
        listed = []
        for line in lines[header + 1 :]:
            if not line.startswith("  "):
                break
            listed.append(line.split()[0])
        assert [n for n in listed if n != "(none"] == role.registry.names()


# --- plug-ins: one file + one yaml per component ------------------------------------------------------

PLUGIN_FILES = {
    "myplug/__init__.py": "",
    "myplug/loud_tagger.py": '''
        import numpy as np

        from pseudolabel.alm.base import AudioDescriber, register


        @register("loud_tagger")
        class LoudTagger(AudioDescriber):
            """Tags a second with `word` when its RMS exceeds `threshold` (plug-in test)."""

            takes_prompts = False

            def __init__(self, word: str = "dog", threshold: float = 0.001, **kwargs):
                super().__init__(**kwargs)
                self.word, self.threshold = word, threshold

            @property
            def sample_rate(self) -> int:
                return 16000

            def _describe_waves(self, waves, prompts):
                return [[self.word if np.sqrt(np.mean(w ** 2)) > self.threshold else ""] for w in waves]
    ''',
    "configs/pseudolabel/alm/loud_tagger.yaml": '''
        loud_tagger:
          _target_: myplug.loud_tagger.LoudTagger
          word: Dog
    ''',
    "myplug/shouting.py": '''
        from pseudolabel.llm.base import Translation, TranslationRecord, Translator, register


        @register("shouting")
        class Shouting(Translator):
            """Each audio text of a frame, upper-cased, is its phrase (plug-in test)."""

            def __init__(self, **preset_options):
                self.preset_options = preset_options

            async def _translate_clip(self, clip, session):
                phrases = [[text.upper() for text in frame.audio if text] for frame in clip.frames]
                record = TranslationRecord(
                    clip_id=clip.clip_id, backend=self.name, model=None, strategy=None, prompt_sha256=None,
                    raw_responses=[], frame_status=["ok"] * len(phrases), fallback_frames=[], parse_notes=[],
                    prompt_tokens=0, completion_tokens=0, cost_usd=0.0, cache_hits=0, latency_s=0.0,
                )
                return Translation(phrases, record)
    ''',
    "configs/pseudolabel/llm/shouting.yaml": '''
        _target_: myplug.shouting.Shouting
    ''',
    "myplug/centre_box.py": '''
        import numpy as np

        from pseudolabel.vfm.base import Detections, Grounder, grounder


        @grounder.register("centre_box")
        class CentreBox(Grounder):
            """One box per phrase: the centre of the image, `fraction` of each side (plug-in test)."""

            def __init__(self, fraction: float = 0.5):
                self.fraction = fraction

            def _detect(self, images, phrases):
                out = []
                for image, names in zip(images, phrases):
                    h, w = image.shape[:2]
                    m = (1 - self.fraction) / 2
                    box = [m * w, m * h, (1 - m) * w, (1 - m) * h]
                    out.append(Detections(np.array([box] * len(names), np.float32), np.ones(len(names), np.float32),
                                          list(names), list(names)))
                return out
    ''',
    "configs/pseudolabel/grounder/centre_box.yaml": '''
        _target_: myplug.centre_box.CentreBox
        fraction: 0.5
    ''',
    "myplug/box_fill.py": '''
        import numpy as np

        from pseudolabel.vfm.base import BoxMasks, Segmenter, segmenter


        @segmenter.register("box_fill")
        class BoxFill(Segmenter):
            """Each box filled as its mask (plug-in test)."""

            def _segment_boxes(self, images, boxes):
                out = []
                for image, image_boxes in zip(images, boxes):
                    masks = np.zeros((len(image_boxes), *image.shape[:2]), bool)
                    for i, (x0, y0, x1, y1) in enumerate(np.round(image_boxes).astype(int)):
                        masks[i, y0:y1, x0:x1] = True
                    out.append(BoxMasks(masks, np.ones(len(image_boxes), np.float32)))
                return out
    ''',
    "configs/pseudolabel/segmenter/box_fill.yaml": '''
        _target_: myplug.box_fill.BoxFill
    ''',
}


def test_plugin_components_run_through_the_cli_without_editing_the_repository(tmp_path: Path) -> None:
    plug = tmp_path / "plug"
    for relative, text in PLUGIN_FILES.items():
        path = plug / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    data = write_synthetic(tmp_path / "data", ("s4",), splits={"test": 2}, size=32, seed=4)["s4"]
    out = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plug), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    searchpath = f"hydra.searchpath=[file://{plug / 'configs'}]"

    listed = subprocess.run([sys.executable, "-m", "pseudolabel", "--list", searchpath], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    for name, text in [("loud_tagger", "Tags a second"), ("shouting", "upper-cased"), ("centre_box", "centre of"),
                       ("box_fill", "filled")]:
        assert any(line.split()[:1] == [name] and text in line for line in listed.stdout.splitlines()), name

    command = [sys.executable, "-m", "pseudolabel", "labeler=openavs_lite", "input=avsbench", "data=avsbench_s4",
               f"data.root={data}", "split=test", f"output={out}", searchpath, "labeler/alm=[loud_tagger]",
               "labeler/llm=shouting", "labeler/grounder=centre_box", "labeler/segmenter=box_fill", "progress=false"]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    store = PseudoLabelStore(out)
    records = load_records(out)
    assert len(store) == 2
    for clip in store:
        info = records[clip.id]["frames_info"]
        assert [f["audio_texts"] for f in info] == [["Dog"]] * 5  # the plug-in ALM heard every second
        assert [f["phrases"] for f in info] == [["DOG"]] * 5  # ... and the plug-in LLM shouted it
        assert all(f["boxes"] == [[8.0, 8.0, 24.0, 24.0]] for f in info)  # the plug-in grounder's centre box
        expected = np.zeros((5, 32, 32), dtype=bool)
        expected[:, 8:24, 8:24] = True  # ... filled by the plug-in segmenter
        np.testing.assert_array_equal(clip.masks.astype(bool), expected)
    saved = (out / "pseudolabel_config.yaml").read_text()
    assert "myplug.shouting.Shouting" in saved and "myplug.box_fill.BoxFill" in saved
    assert json.loads((out / "summary.json").read_text())["run"]["clips_ok"] == 2
