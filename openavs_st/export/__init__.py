"""Export a trained model to a self-contained folder, and load it back without Lightning.

An export folder holds::

    model.safetensors   weights only: the backbone under ``net.`` (VGGish included) and the robust
                        similarity head, if trained, under ``similarity.`` (the key names of the
                        Lightning checkpoint's ``state_dict``)
    config.yaml         what rebuilds the model: backbone name, _target_ + cfg, recipe key and full recipe,
                        input size, T, normalisation, package version; plus the training provenance
    metrics.json        final metrics by logged name (``test/miou_avsbench``, ``test/f_avsbench`` …)
    README.md           model card
    model.onnx          optional (``onnx=True``): ``(frames, audio) -> logits``, fixed T and frame
                        size, dynamic batch; checked against PyTorch with onnxruntime at export

Secrets (API keys, tokens) never reach any of these files (:func:`scrub_secrets`).

``openavs_st.load_model(folder)`` rebuilds the backbone from ``config.yaml`` (its ``_target_``, or
the registered name of exports written before ``_target_`` configs) and loads ``model.safetensors``
strictly. From a Lightning checkpoint::

    python -m openavs_st.export ckpt=logs/train/runs/<run>/checkpoints/last.ckpt out=DIR [onnx=true]
        [cfg=PATH/config_resolved.yaml] [metrics=PATH/metrics.json]

The parts: :mod:`~openavs_st.export.folder` (file names, ``config.yaml`` written and read),
:mod:`~openavs_st.export.weights` (:func:`export_module`, :func:`load_model`),
:mod:`~openavs_st.export.onnx` (:func:`export_onnx` and its onnxruntime check),
:mod:`~openavs_st.export.card` (the model card), :mod:`~openavs_st.export.cli` (checkpoints and the
command line).
"""

from openavs_st.export.card import METRIC_MODES, metric_mode, model_card
from openavs_st.export.cli import (
    CheckpointError,
    checkpoint_metrics,
    load_checkpoint,
    main,
    read_checkpoint,
    run_config_of,
)
from openavs_st.export.folder import (
    CARD_FILE,
    CONFIG_FILE,
    EXPORT_FORMAT,
    METRICS_FILE,
    NET_PREFIX,
    ONNX_DATA_FILE,
    ONNX_FILE,
    SIMILARITY_PREFIX,
    WEIGHT_FILE_ARG_PREFIX,
    WEIGHTS_FILE,
    ExportError,
    data_provenance,
    export_config,
    package_version,
    read_export_config,
    resolve_config,
    to_plain,
)
from openavs_st.export.onnx import (
    ONNX_CHECK_BATCHES,
    ONNX_OPSET,
    ONNX_TOLERANCE,
    LogitsOnly,
    check_onnx,
    example_inputs,
    export_onnx,
)
from openavs_st.export.weights import (
    export_module,
    export_state_dict,
    load_model,
    write_description,
)

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "EXPORT_FORMAT",
    "METRICS_FILE",
    "METRIC_MODES",
    "NET_PREFIX",
    "ONNX_CHECK_BATCHES",
    "ONNX_DATA_FILE",
    "ONNX_FILE",
    "ONNX_OPSET",
    "ONNX_TOLERANCE",
    "SIMILARITY_PREFIX",
    "WEIGHTS_FILE",
    "WEIGHT_FILE_ARG_PREFIX",
    "CheckpointError",
    "ExportError",
    "LogitsOnly",
    "check_onnx",
    "checkpoint_metrics",
    "data_provenance",
    "example_inputs",
    "export_config",
    "export_module",
    "export_onnx",
    "export_state_dict",
    "load_checkpoint",
    "load_model",
    "main",
    "metric_mode",
    "model_card",
    "package_version",
    "read_checkpoint",
    "read_export_config",
    "resolve_config",
    "run_config_of",
    "to_plain",
    "write_description",
]
