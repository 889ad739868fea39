"""Write the official AVSegFormer checkpoint layouts (``name<TAB>shape`` per line) used by
``tests/test_avsegformer.py``.

Run from the repository root: ``python tests/data/official_keys/make_avsegformer_keys.py``.

Like ``make_official_keys.py`` (whose helpers and backbone/VGGish layouts this reuses), the layouts
are enumerated from the structure of the original code, independently of the openavs-st modules:
vvvb-github/AVSegFormer (commit 7083cb6) ``model/AVSegFormer.py`` saved with
``model.module.state_dict()``: ``backbone.*`` (whai362 PVT-v2-B5 without classifier, or
``B2_ResNet`` with its dead ``layer3_2``/``layer4_2``), ``vggish.*``, ``head.*``
(``model/head/AVSegHead.py`` with ``model/utils/{transformer,query_generator,fusion_block}.py`` and
Deformable-DETR ``ops/modules/ms_deform_attn.py``; configs ``config/*/AVSegFormer_*.py``: 6+6
transformer layers, 6 generator layers, 300 queries, FFN 2048 / 1024), ``audio_proj.*``.

- ``avsegformer_pvt_v2_b5.tsv``: S4/MS3 (K=1); the reference notes give 1413 tensors.
- ``avsegformer_pvt_v2_b5_avss.tsv``: AVSS (K=71).
- ``avsegformer_resnet50.tsv``: S4/MS3 with ``B2_ResNet``.
"""

from __future__ import annotations

from make_official_keys import Layout, b2_resnet, conv, linear, norm, pvt_v2_b5, vggish, write

EMBED, QUERIES, HEADS = 256, 300, 8
LEVELS, POINTS = 3, 4  # valid_indices [1, 2, 3]; MSDeformAttn n_points=4


def attention(name: str, bias: bool) -> Layout:
    """``nn.MultiheadAttention(256, 8, bias=...)``: packed in-projection + out_proj."""
    layout: Layout = [(f"{name}.in_proj_weight", (3 * EMBED, EMBED))]
    if bias:
        layout += [(f"{name}.in_proj_bias", (3 * EMBED,))]
    return layout + linear(f"{name}.out_proj", EMBED, EMBED, bias=bias)


def prediction_head(name: str, num_classes: int) -> Layout:
    """``fc`` / ``attn_fc``: conv3x3 256->128, Interpolate, conv3x3 128->32, ReLU, conv1x1 32->K."""
    return (
        conv(f"{name}.0", 128, EMBED, 3, 3)
        + conv(f"{name}.2", 32, 128, 3, 3)
        + conv(f"{name}.4", num_classes, 32, 1, 1, bias=False)
    )


def avseg_head(in_channels: tuple[int, ...], num_classes: int) -> Layout:
    """``AVSegHead`` in registration order (``head.`` prefix)."""
    h = "head"
    layout: Layout = [(f"{h}.level_embed", (LEVELS, EMBED))]
    layout += [(f"{h}.learnable_query.weight", (QUERIES, EMBED))]
    # query_generator.py::AttentionGenerator(num_layers=6, query_num=300, hidden_dim=1024)
    layout += [(f"{h}.query_generator.query.weight", (QUERIES, EMBED))]
    for i in range(6):
        layer = f"{h}.query_generator.layers.{i}"
        layout += attention(f"{layer}.self_attn", bias=False)
        layout += attention(f"{layer}.cross_attn", bias=False)
        layout += linear(f"{layer}.ffn.0", 1024, EMBED) + linear(f"{layer}.ffn.2", EMBED, 1024)
        layout += norm(f"{layer}.norm1", EMBED) + norm(f"{layer}.norm2", EMBED)
        layout += norm(f"{layer}.norm3", EMBED)
    # transformer.py::AVSTransformerEncoderLayer with MSDeformAttn(256, 3 levels, 8 heads, 4 points)
    for i in range(6):
        layer = f"{h}.transformer.encoder.layers.{i}"
        layout += linear(f"{layer}.self_attn.sampling_offsets", HEADS * LEVELS * POINTS * 2, EMBED)
        layout += linear(f"{layer}.self_attn.attention_weights", HEADS * LEVELS * POINTS, EMBED)
        layout += linear(f"{layer}.self_attn.value_proj", EMBED, EMBED)
        layout += linear(f"{layer}.self_attn.output_proj", EMBED, EMBED)
        layout += norm(f"{layer}.norm1", EMBED)
        layout += linear(f"{layer}.linear1", 2048, EMBED) + linear(f"{layer}.linear2", EMBED, 2048)
        layout += norm(f"{layer}.norm2", EMBED)
    # transformer.py::AVSTransformerDecoderLayer
    for i in range(6):
        layer = f"{h}.transformer.decoder.layers.{i}"
        layout += attention(f"{layer}.self_attn", bias=True) + norm(f"{layer}.norm1", EMBED)
        layout += attention(f"{layer}.cross_attn", bias=True) + norm(f"{layer}.norm2", EMBED)
        layout += linear(f"{layer}.linear1", 2048, EMBED) + linear(f"{layer}.linear2", EMBED, 2048)
        layout += norm(f"{layer}.norm3", EMBED)
    for i, channels in enumerate(in_channels):
        layout += conv(f"{h}.in_proj.{i}.0", EMBED, channels, 1, 1)
        layout += norm(f"{h}.in_proj.{i}.1", EMBED)
    # MLP(query_num, 2048, embed_dim, 3) of 1x1 convs
    layout += conv(f"{h}.mlp.layers.0", 2048, QUERIES, 1, 1)
    layout += conv(f"{h}.mlp.layers.1", 2048, 2048, 1, 1)
    layout += conv(f"{h}.mlp.layers.2", EMBED, 2048, 1, 1)
    # fusion_block.py::CrossModalMixer(dim=256, n_heads=8, qkv_bias=False)
    layout += linear(f"{h}.fusion_block.q_proj", EMBED, EMBED, bias=False)
    layout += linear(f"{h}.fusion_block.kv_proj", 2 * EMBED, EMBED, bias=False)
    layout += linear(f"{h}.fusion_block.proj", EMBED, EMBED)
    layout += conv(f"{h}.lateral_conv.0", EMBED, EMBED, 1, 1) + norm(f"{h}.lateral_conv.1", EMBED)
    layout += conv(f"{h}.out_conv.0", EMBED, EMBED, 3, 3) + norm(f"{h}.out_conv.1", EMBED)
    # SimpleFPN: up1..up3 = Sequential(Interpolate, Conv2d(256, 256, 3)); built, never called.
    for i in (1, 2, 3):
        layout += conv(f"{h}.fpn.up{i}.1", EMBED, EMBED, 3, 3)
    layout += prediction_head(f"{h}.attn_fc", num_classes)  # built, never called
    layout += prediction_head(f"{h}.fc", num_classes)
    return layout


def avsegformer(backbone: Layout, in_channels: tuple[int, ...], num_classes: int) -> Layout:
    """``AVSegFormer``: backbone, vggish, head, audio_proj (registration order)."""
    audio = [(f"vggish.{name}", shape) for name, shape in vggish()]
    return (
        backbone + audio + avseg_head(in_channels, num_classes) + linear("audio_proj", EMBED, 128)
    )


def main() -> None:
    pvt = pvt_v2_b5("backbone.", head=False)
    pvt_channels, resnet_channels = (64, 128, 320, 512), (256, 512, 1024, 2048)
    write("avsegformer_pvt_v2_b5.tsv", avsegformer(pvt, pvt_channels, 1))
    write("avsegformer_pvt_v2_b5_avss.tsv", avsegformer(pvt, pvt_channels, 71))
    write("avsegformer_resnet50.tsv", avsegformer(b2_resnet("backbone."), resnet_channels, 1))


if __name__ == "__main__":
    main()
