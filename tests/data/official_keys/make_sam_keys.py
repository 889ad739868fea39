"""Write the official SAM and SAMA-AVS checkpoint layouts: one ``name<TAB>shape`` line per tensor.

Usage (from the repository root; needs Meta's own ``segment_anything`` package, which is not a
dependency of openavs-st — ``pip install segment-anything==1.0``, or unpack its wheel and put it
on ``PYTHONPATH``)::

    python tests/data/official_keys/make_sam_keys.py

Writes into this folder:

- ``sam_vit_{h,l,b}.tsv``: ``Sam.state_dict()`` of ``segment_anything.sam_model_registry[v]()``
  built on the meta device — the layout of ``sam_vit_h_4b8939.pth`` / ``sam_vit_l_0b3195.pth`` /
  ``sam_vit_b_01ec64.pth``.
- ``sam_tiny.tsv``: the same ``Sam`` classes at the sizes of our ``preset="tiny"`` SAMA
  (``backbones.sama_avs.TINY_CONFIG``; prompt encoder with ``mask_in_chans=16`` as in SAM).
- ``sama_avs_vit_h.tsv`` / ``sama_avs_tiny.tsv``: the SAMA-AVS ``model.state_dict()`` layout of
  jinxiang-liu/anno-free-AVS ``models/sam.py``: SAM's ``image_encoder.*`` and ``mask_decoder.*``
  (from the official classes above) plus
  ``image_encoder.prompt_generator.{shared_mlp, lightweight_mlp_{i}.0}`` (``AudioPromptGenerator(
  embed_dim, depth, aud_in_dim=128, aud_hidden_dim=512)`` in
  ``models/mmseg/models/sam/image_encoder.py``), top-level
  ``pe_layer.positional_encoding_gaussian_matrix`` ``[2, 128]`` and ``no_mask_embed.weight``
  ``[1, 256]``, and ``audio_encoder.audio_backbone.*`` (torchvggish ``make_layers`` naming:
  conv+ReLU per width, one module per max-pool). The tiny file uses our tiny VGGish shapes.

The script checks the SAMA ViT-H parameter total (all tensors but the ``pe_layer`` buffer)
against the reference count (715,996,004, backbones.md §4.5).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from backbones.encoders.vggish import VGGish
from backbones.sama_avs import TINY_CONFIG

try:
    from segment_anything import sam_model_registry
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )
except ImportError as exc:  # pragma: no cover - generator script
    raise SystemExit("needs Meta's segment_anything package: pip install segment-anything==1.0") from exc

HERE = Path(__file__).parent
REFERENCE_SAMA_VIT_H_PARAMS = 715_996_004
Shapes = dict[str, tuple[int, ...]]


def shapes_of(module: torch.nn.Module) -> Shapes:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def vggish_official_shapes() -> Shapes:
    """torchvggish VGG: features = [conv3x3+ReLU per width, MaxPool per 'M'], embeddings =
    Linear(512*4*6, 4096), ReLU, Linear(4096, 4096), ReLU, Linear(4096, 128), ReLU."""
    shapes: Shapes = {}
    index, in_ch = 0, 1
    for item in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
        if item == "M":
            index += 1
            continue
        shapes[f"features.{index}.weight"] = (item, in_ch, 3, 3)
        shapes[f"features.{index}.bias"] = (item,)
        in_ch, index = item, index + 2
    for index, (n_in, n_out) in zip((0, 2, 4), ((512 * 4 * 6, 4096), (4096, 4096), (4096, 128))):
        shapes[f"embeddings.{index}.weight"] = (n_out, n_in)
        shapes[f"embeddings.{index}.bias"] = (n_out,)
    return shapes


def tiny_sam() -> Sam:
    """Official ``Sam`` classes at our tiny SAMA sizes."""
    cfg = TINY_CONFIG
    grid = cfg.img_size // cfg.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio,
            out_chans=cfg.prompt_embed_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=cfg.window_size,
            global_attn_indexes=cfg.global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=cfg.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(cfg.img_size, cfg.img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=cfg.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=cfg.decoder_depth,
                embedding_dim=cfg.prompt_embed_dim,
                mlp_dim=cfg.decoder_mlp_dim,
                num_heads=cfg.decoder_num_heads,
            ),
            transformer_dim=cfg.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        ),
    )


def sama_shapes(sam: Shapes, *, embed_dim: int, depth: int, adapter_hidden: int, vggish: Shapes) -> Shapes:
    """SAMA-AVS layout from a SAM layout (anno-free-AVS models/sam.py + image_encoder.py)."""
    prompt_dim = sam["prompt_encoder.no_mask_embed.weight"][1]
    shapes = {k: v for k, v in sam.items() if k.startswith(("image_encoder.", "mask_decoder."))}
    adapters = "image_encoder.prompt_generator."
    shapes[adapters + "shared_mlp.weight"] = (embed_dim, adapter_hidden)
    shapes[adapters + "shared_mlp.bias"] = (embed_dim,)
    for i in range(depth):
        shapes[adapters + f"lightweight_mlp_{i}.0.weight"] = (adapter_hidden, 128)
        shapes[adapters + f"lightweight_mlp_{i}.0.bias"] = (adapter_hidden,)
    shapes["pe_layer.positional_encoding_gaussian_matrix"] = (2, prompt_dim // 2)
    shapes["no_mask_embed.weight"] = (1, prompt_dim)
    shapes.update({f"audio_encoder.audio_backbone.{k}": v for k, v in vggish.items()})
    return shapes


def write(name: str, shapes: Shapes) -> None:
    lines = [f"{k}\t{','.join(map(str, v))}" for k, v in sorted(shapes.items())]
    (HERE / name).write_text("\n".join(lines) + "\n")
    print(f"{name}: {len(shapes)} tensors, {sum(_numel(s) for s in shapes.values()):,} values")


def _numel(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def main() -> None:
    with torch.device("meta"):
        sam_layouts = {v: shapes_of(sam_model_registry[v]()) for v in ("vit_h", "vit_l", "vit_b")}
        sam_tiny = shapes_of(tiny_sam())
    for variant, shapes in sam_layouts.items():
        write(f"sam_{variant}.tsv", shapes)
    write("sam_tiny.tsv", sam_tiny)

    # configs/sam_avs_adapter.yaml: embed_dim 1280, depth 32; adapters 128 -> 512 -> 1280.
    sama_h = sama_shapes(
        sam_layouts["vit_h"], embed_dim=1280, depth=32, adapter_hidden=512, vggish=vggish_official_shapes()
    )
    # The reference counts parameters: every tensor but the pe_layer buffer.
    params = sum(_numel(s) for k, s in sama_h.items() if not k.startswith("pe_layer."))
    if params != REFERENCE_SAMA_VIT_H_PARAMS:
        raise SystemExit(
            f"SAMA ViT-H layout has {params:,} parameters, reference says {REFERENCE_SAMA_VIT_H_PARAMS:,}"
        )
    write("sama_avs_vit_h.tsv", sama_h)
    write(
        "sama_avs_tiny.tsv",
        sama_shapes(
            sam_tiny,
            embed_dim=TINY_CONFIG.embed_dim,
            depth=TINY_CONFIG.depth,
            adapter_hidden=TINY_CONFIG.adapter_hidden_dim,
            vggish=shapes_of(VGGish(tiny=True)),
        ),
    )


if __name__ == "__main__":
    main()
