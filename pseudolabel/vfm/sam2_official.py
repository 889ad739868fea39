"""The ``sam2_official`` segmenter: Meta's ``sam2`` package (``SAM2ImagePredictor``) with a local
checkpoint.

Install with ``pip install -e ".[sam2]"``; on a CPU-only machine
``SAM2_BUILD_CUDA=0 pip install --no-build-isolation -e ".[sam2]"`` (``sam2`` is sdist-only and
otherwise builds against a second torch in an isolated environment; the CUDA extension it skips is
only used for hole filling, which the image predictor does not do by default).

The model is built like ``sam2.build_sam.build_sam2(model_config, checkpoint, device,
apply_postprocessing=...)`` but without Hydra's global state, which our own Hydra application owns:
the package's YAML is read with OmegaConf, overrides (``key=value``, with or without the ``+``/``++``
prefix) are merged in, and ``hydra.utils.instantiate`` builds the model. ``import sam2`` itself
initialises Hydra's global config module when nothing else has; that initialisation is undone
right after the import. The checkpoint is the ``.pt`` Meta publishes
(``sam2.1_hiera_{tiny,small,base_plus,large}.pt``), loaded with ``weights_only=True`` and a strict
key check; its ``"model"`` entry is the state dict (``sam2/build_sam.py`` ``_load_checkpoint``).

Per image all boxes go to ``predict_batch(box_batch=..., multimask_output=False)`` after one batched
``set_image_batch``; masks are the predictor's, thresholded at 0 (``mask_threshold=0.0``).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel.components import Lazy, check_dtype
from pseudolabel.vfm.base import (
    BoxMasks,
    Segmenter,
    check_batch_size,
    chunks,
    segmenter,
)

DEFAULT_CONFIG = "configs/sam2.1/sam2.1_hiera_l.yaml"
INSTALL_HINT = (
    'the sam2_official segmenter needs the `sam2` package: pip install -e ".[sam2]" '
    '(on a CPU-only machine: SAM2_BUILD_CUDA=0 pip install --no-build-isolation -e ".[sam2]")'
)
# sam2/build_sam.py build_sam2(apply_postprocessing=True): fall back to the best of the multimask
# outputs when the single mask is unstable.
POSTPROCESSING_OVERRIDES = (
    "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)
# SAM2ImagePredictor's backbone feature sizes are image_size / 4, / 8, / 16
# (hard-coded there as (256, 256), (128, 128), (64, 64) for 1024).
FEATURE_STRIDES = (4, 8, 16)


def import_sam2() -> tuple[Any, Path]:
    """``SAM2ImagePredictor`` and the sam2 package directory, leaving Hydra's global state as found.

    Raises:
        ImportError: the ``sam2`` package is not installed (the message says how to install it).
    """
    from hydra import version as hydra_version
    from hydra.core.global_hydra import GlobalHydra

    hydra_was_initialized = GlobalHydra.instance().is_initialized()
    version_base = hydra_version.VersionBase.instance().getbase()
    try:
        predictor_module = importlib.import_module("sam2.sam2_image_predictor")
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    finally:
        # sam2/__init__.py runs initialize_config_module("sam2", version_base="1.2") when no Hydra
        # instance exists; undo it so a later Hydra initialisation of ours still works.
        if not hydra_was_initialized and GlobalHydra.instance().is_initialized():
            GlobalHydra.instance().clear()
            hydra_version.VersionBase.instance().version_base = version_base
    package_dir = Path(importlib.import_module("sam2").__file__).parent
    return predictor_module.SAM2ImagePredictor, package_dir


def config_file(model_config: str | Path, package_dir: Path) -> Path:
    """The YAML of ``model_config``: a file path, or a config name inside the sam2 package
    (``configs/sam2.1/sam2.1_hiera_l.yaml``, legacy ``sam2_hiera_l.yaml`` ...)."""
    path = Path(model_config)
    if path.is_file():
        return path
    packaged = package_dir / path
    if packaged.is_file():
        return packaged
    names = sorted(str(p.relative_to(package_dir)) for p in package_dir.glob("configs/**/*.yaml"))
    raise FileNotFoundError(
        f"SAM 2 model config {str(model_config)!r} is neither a file nor a config of the sam2 package "
        f"at {package_dir}; packaged model configs: {names}"
    )


def dotlist_item(override: str) -> str:
    """A Hydra-style override (``++a.b=1``, ``+a.b=1``, ``a.b=1``) as an OmegaConf dotlist item."""
    item = override.lstrip("+")
    if override.startswith("~") or "=" not in item:
        raise ValueError(f"override {override!r} is not supported: use key=value (optionally with + or ++)")
    return item


def build_sam2_image_predictor(
    model_config: str | Path, overrides: Sequence[str], checkpoint: str | Path | None, device: str
) -> Any:
    """A ``SAM2ImagePredictor`` (mask threshold 0) on the ``SAM2Base`` built from a model config of the
    ``sam2`` package (with dotlist ``overrides``) and, when given, the checkpoint loaded strictly; its
    ``model`` is the model (the video predictor builds on the same one)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    predictor_class, package_dir = import_sam2()
    config = OmegaConf.merge(OmegaConf.load(config_file(model_config, package_dir)), OmegaConf.from_dotlist(list(overrides)))
    OmegaConf.resolve(config)
    model = instantiate(config.model, _recursive_=True)
    if checkpoint is not None:
        load_sam2_checkpoint(model, checkpoint)
    model = model.to(device).eval()
    predictor = predictor_class(model, mask_threshold=0.0)
    predictor._bb_feat_sizes = [(model.image_size // s, model.image_size // s) for s in FEATURE_STRIDES]
    return predictor


def load_sam2_checkpoint(model: Any, checkpoint: str | Path) -> None:
    """Load Meta's SAM 2 ``.pt`` (``{"model": state_dict}``) into ``model`` with a strict key check."""
    from backbones.encoders import load_state_dict_strict, load_weights_only

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"SAM 2 checkpoint {path} does not exist")
    content = load_weights_only(path, "SAM 2 checkpoint")
    if not isinstance(content, dict) or "model" not in content:
        keys = sorted(content)[:10] if isinstance(content, dict) else type(content).__name__
        raise KeyError(f"{path} is not a SAM 2 checkpoint: it has no 'model' entry (found {keys})")
    load_state_dict_strict(model, content["model"], source=f"SAM 2 checkpoint {path}")


@segmenter.register("sam2_official")
class Sam2OfficialSegmenter(Segmenter):
    """SAM 2 through the ``sam2`` package's ``SAM2ImagePredictor``.

    Args:
        checkpoint: Meta's ``.pt`` file, or None for random weights (tests only: say it explicitly).
        model_config: a sam2 package config name or a YAML path matching the checkpoint.
        apply_postprocessing: ``build_sam2``'s option (the stability fallback), default True as there.
        image_size: model input size override (``model.image_size``; default the config's 1024).
        overrides: extra ``key=value`` config overrides.
        batch_size: images per ``set_image_batch``.
        device: torch device.
        dtype: ``float32``; ``float16``/``bfloat16`` run under ``torch.autocast`` (weights stay
            float32, as in the sam2 demos).
    """

    source_key = "checkpoint"

    def __init__(
        self,
        checkpoint: str | Path | None,
        model_config: str | Path = DEFAULT_CONFIG,
        *,
        apply_postprocessing: bool = True,
        image_size: int | None = None,
        overrides: Sequence[str] = (),
        batch_size: int = 4,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.model_config = str(model_config)
        self.overrides = [
            *(POSTPROCESSING_OVERRIDES if apply_postprocessing else ()),
            *([f"model.image_size={int(image_size)}"] if image_size is not None else []),
            *(dotlist_item(override) for override in overrides),
        ]
        self.batch_size = check_batch_size(batch_size)
        self.device = device
        self.dtype = check_dtype(dtype)
        self._predictor: Lazy[Any] = Lazy(self._load)

    @classmethod
    def from_pretrained(
        cls, checkpoint: str | Path, model_config: str | Path = DEFAULT_CONFIG, **kwargs: Any
    ) -> Sam2OfficialSegmenter:
        """A segmenter loading Meta's checkpoint on first use."""
        return cls(checkpoint, model_config, **kwargs)

    @classmethod
    def from_config(cls, model_config: str | Path = DEFAULT_CONFIG, **kwargs: Any) -> Sam2OfficialSegmenter:
        """A segmenter with random weights (tests, offline)."""
        return cls(None, model_config, **kwargs)

    def __repr__(self) -> str:
        return (
            f"Sam2OfficialSegmenter(checkpoint={self.checkpoint}, model_config={self.model_config!r}, "
            f"device={self.device!r}, dtype={self.dtype!r})"
        )

    @property
    def predictor(self) -> Any:
        """The ``SAM2ImagePredictor`` (built now if needed); its ``model`` is the ``SAM2Base``."""
        return self._predictor.get()

    def _load(self) -> Any:
        return build_sam2_image_predictor(self.model_config, self.overrides, self.checkpoint, self.device)

    def _segment_boxes(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[BoxMasks]:
        predictor = self.predictor  # first: a missing sam2 package fails before torch is imported
        import torch

        autocast = (
            torch.autocast(torch.device(self.device).type, dtype=getattr(torch, self.dtype))
            if self.dtype not in ("float32", "auto")
            else contextlib.nullcontext()
        )
        results: list[BoxMasks] = []
        for batch in chunks(range(len(images)), self.batch_size):
            with torch.inference_mode(), autocast:
                predictor.set_image_batch([images[i] for i in batch])
                masks, scores, _ = predictor.predict_batch(box_batch=[boxes[i] for i in batch], multimask_output=False)
            for row, index in enumerate(batch):
                count = len(boxes[index])
                results.append(
                    BoxMasks(
                        masks=masks[row].reshape(count, *images[index].shape[:2]) > 0.5,
                        scores=scores[row].reshape(count).astype(np.float32),
                    )
                )
        return results
