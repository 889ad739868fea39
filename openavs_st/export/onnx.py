"""ONNX export of a backbone, ``(frames, audio) -> logits``, checked against PyTorch in onnxruntime
(:func:`export_onnx`). ``onnx`` and ``onnxruntime`` are imported only when used (the ``onnx`` extra)."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from openavs_st.export.folder import ONNX_DATA_FILE, ONNX_FILE, ExportError

ONNX_OPSET = 17  # grid_sample (AVSegFormer's deformable attention) needs >= 16; LayerNormalization 17
ONNX_TOLERANCE = 1e-4  # |onnx - torch| <= tol * (1 + |torch|), elementwise
ONNX_CHECK_BATCHES = (1, 2)  # batch sizes the exported graph is checked at (the batch axis is dynamic)
ONNX_MAX_INLINE_BYTES = 1_800_000_000  # protobuf messages are capped at 2 GiB


class LogitsOnly(nn.Module):
    """``(frames [B,T,3,H,W], audio [B,T,1,96,64]) -> logits [B,T,K,H,W]`` of a backbone."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.net(frames, audio).logits


def example_inputs(
    batch: int, num_frames: int, size: tuple[int, int], seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``frames [B,T,3,H,W]`` and ``audio [B,T,1,96,64]`` (standard normal, seeded)."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(batch, num_frames, 3, *size, generator=generator)
    audio = torch.randn(batch, num_frames, 1, 96, 64, generator=generator)
    return frames, audio


def export_onnx(
    net: nn.Module,
    path: Path,
    *,
    num_frames: int,
    size: tuple[int, int],
    metadata: Mapping[str, str] | None = None,
    opset: int = ONNX_OPSET,
    tolerance: float = ONNX_TOLERANCE,
    check_batches: tuple[int, ...] = ONNX_CHECK_BATCHES,
) -> dict[str, Any]:
    """Write ``net`` as ONNX (inputs ``frames``, ``audio``; output ``logits``) and check it.

    T and the frame size are fixed; the batch axis is dynamic. The graph is traced with the
    TorchScript exporter (``dynamo=False``: the torch.export-based one needs onnxscript). The
    file is then run in onnxruntime on fresh random inputs of each batch size in ``check_batches``
    (default 1 and 2, so a trace that baked in input values or the batch size is caught) and must
    match PyTorch within ``tolerance * (1 + |torch|)``. Models above 2 GiB keep their weights in
    ``model.onnx.data``. Export runs on the CPU (the net is moved there and back). Memory: the
    TorchScript trace holds about 3.7 times the activations of one forward (SAMA-AVS ViT-B at
    512: 2.1 GB forward, 7.7 GB trace; at its original 1024 the trace exceeded 24 GB).

    Returns:
        The ``onnx`` section of ``config.yaml`` (file, opset, names, measured max abs difference).

    Raises:
        ExportError: the exporter fails (naming the backbone and the reason) or the check fails
            (the file is removed).
    """
    was_training = net.training
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    # Traced and checked on the CPU (onnxruntime runs the check there; GPU kernels, e.g. TF32, differ).
    wrapper = LogitsOnly(net.cpu()).eval()  # a fresh module is in training mode; the exporter restores it
    try:
        large = _trace_to_onnx(wrapper, path, num_frames=num_frames, size=size, metadata=metadata, opset=opset)
        try:
            max_diff = check_onnx(
                wrapper, path, num_frames=num_frames, size=size, tolerance=tolerance, batches=check_batches
            )
        except ExportError:
            path.unlink(missing_ok=True)
            path.with_name(ONNX_DATA_FILE).unlink(missing_ok=True)
            raise
    finally:
        net.to(device).train(was_training)
    return {
        "file": path.name,
        "opset": opset,
        "inputs": {"frames": ["batch", num_frames, 3, *size], "audio": ["batch", num_frames, 1, 96, 64]},
        "outputs": {"logits": ["batch", num_frames, "K", *size]},
        "max_abs_diff_vs_pytorch": max_diff,
        "checked_batches": list(check_batches),
        "external_data": ONNX_DATA_FILE if large else None,
    }


def _trace_to_onnx(
    wrapper: nn.Module,
    path: Path,
    *,
    num_frames: int,
    size: tuple[int, int],
    metadata: Mapping[str, str] | None,
    opset: int,
) -> bool:
    """Trace ``wrapper`` to ``path`` (with ``metadata`` in the model's properties); True if the
    weights went to the external file ``model.onnx.data``.

    Raises:
        ExportError: the exporter failed, naming the backbone and the reason.
    """
    import onnx

    try:
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            traced = Path(tmp) / ONNX_FILE
            with warnings.catch_warnings():
                # Shape checks turn into constants: intended, T and the frame size are fixed.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                # The legacy exporter is chosen on purpose (export_onnx's docstring says why); its
                # deprecation notices are not the user's to act on.
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(
                    wrapper,
                    example_inputs(1, num_frames, size, seed=0),
                    str(traced),
                    input_names=["frames", "audio"],
                    output_names=["logits"],
                    dynamic_axes={"frames": {0: "batch"}, "audio": {0: "batch"}, "logits": {0: "batch"}},
                    opset_version=opset,
                    dynamo=False,
                )
            proto = onnx.load(str(traced))  # pulls in external weight files, if any
            for key, value in (metadata or {}).items():
                proto.metadata_props.add(key=key, value=value)
            large = sum(t.ByteSize() for t in proto.graph.initializer) > ONNX_MAX_INLINE_BYTES
            path.with_name(ONNX_DATA_FILE).unlink(missing_ok=True)
            onnx.save_model(
                proto, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
                location=ONNX_DATA_FILE,
            )
    except Exception as exc:  # any exporter failure becomes one clear error
        name = type(getattr(wrapper, "net", wrapper)).__name__
        reason = (str(exc).strip().splitlines() or [""])[0]  # the exporter appends the whole graph
        if "_upsample_bilinear2d_aa" in reason:
            reason += (
                " (antialiased resizing has no ONNX operator; SAMA-AVS resizes frames to its SAM encoder "
                "size with it, so export SAMA-AVS at an input size equal to its img_size, e.g. 1024)"
            )
        raise ExportError(f"ONNX export of {name} failed: {type(exc).__name__}: {reason}") from exc
    return large


def check_onnx(
    wrapper: nn.Module,
    path: Path,
    *,
    num_frames: int,
    size: tuple[int, int],
    tolerance: float,
    batches: tuple[int, ...] = ONNX_CHECK_BATCHES,
) -> float:
    """Run ``path`` in onnxruntime and PyTorch on a random input per batch size in ``batches``
    (seeds 1, 2, ...: not the traced input); returns the max abs difference.

    Raises:
        ExportError: some element differs by more than ``tolerance * (1 + |torch|)``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper.eval()
    worst = 0.0
    for seed, batch in enumerate(batches, start=1):
        frames, audio = example_inputs(batch, num_frames, size, seed=seed)
        with torch.no_grad():
            expected = wrapper(frames, audio).numpy()
        (got,) = session.run(["logits"], {"frames": frames.numpy(), "audio": audio.numpy()})
        if got.shape != expected.shape:
            raise ExportError(f"{path}: onnxruntime logits have shape {got.shape}, PyTorch {expected.shape}")
        diff = np.abs(got - expected)
        worst = max(worst, float(diff.max()))
        if not np.all(diff <= tolerance * (1.0 + np.abs(expected))):
            raise ExportError(
                f"{path}: onnxruntime output differs from PyTorch by up to {worst:.3g} "
                f"(batch {batch}; allowed {tolerance:g} * (1 + |logit|)); the exported graph is wrong"
            )
    return worst
