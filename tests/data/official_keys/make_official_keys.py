"""Write the official tensor layouts (``name<TAB>shape`` per line) used by the loading tests.

Run from the repository root: ``python tests/data/official_keys/make_official_keys.py``.

The layouts are enumerated here from the structure of the original code, independently of the
openavs-st modules, so the tests check our key mapping against the originals:

- ``vggish.tsv``: ``vggish-10086976.pth`` (harritaylor/torchvggish ``make_layers`` + ``VGG.embeddings``).
- ``pvt_v2_b5.tsv``: whai362/PVT ``pvt_v2_b5.pth`` (``PyramidVisionTransformerV2`` with the
  ImageNet ``head``).
- ``resnet50_torchvision.tsv``: torchvision ``resnet50-19c8e357.pth``.
- ``tpavi_pvt_v2_b5.tsv`` / ``tpavi_pvt_v2_b5_avss.tsv`` / ``tpavi_resnet50.tsv``: AVSBench
  ``Pred_endecoder(channel=256, tpavi_stages=[0,1,2,3])`` saved with ``model.module.state_dict()``
  (``avs_ms3/model/{PVT,ResNet}_AVSModel.py``, ``model/TPAVI.py``, ``model/resnet.py``; AVSS:
  ``avss/model/*``: ``align_channel`` without bias, 71 output classes). The reference notes give
  1190 tensors for the PVT model.
"""

from __future__ import annotations

from pathlib import Path

Layout = list[tuple[str, tuple[int, ...]]]
OUT_DIR = Path(__file__).resolve().parent


def linear(name: str, out_f: int, in_f: int, bias: bool = True) -> Layout:
    return [(f"{name}.weight", (out_f, in_f))] + ([(f"{name}.bias", (out_f,))] if bias else [])


def conv(name: str, out_c: int, in_c: int, *kernel: int, bias: bool = True) -> Layout:
    return [(f"{name}.weight", (out_c, in_c, *kernel))] + ([(f"{name}.bias", (out_c,))] if bias else [])


def norm(name: str, dim: int) -> Layout:
    return [(f"{name}.weight", (dim,)), (f"{name}.bias", (dim,))]


def batchnorm(name: str, dim: int) -> Layout:
    return norm(name, dim) + [
        (f"{name}.running_mean", (dim,)),
        (f"{name}.running_var", (dim,)),
        (f"{name}.num_batches_tracked", ()),
    ]


def vggish() -> Layout:
    layout: Layout = []
    in_c = 1
    for index, out_c in zip((0, 3, 6, 8, 11, 13), (64, 128, 256, 256, 512, 512)):
        layout += conv(f"features.{index}", out_c, in_c, 3, 3)
        in_c = out_c
    layout += linear("embeddings.0", 4096, 512 * 4 * 6)
    layout += linear("embeddings.2", 4096, 4096)
    layout += linear("embeddings.4", 128, 4096)
    return layout


def pvt_v2_b5(prefix: str = "", head: bool = True) -> Layout:
    dims, depths, srs = (64, 128, 320, 512), (3, 6, 40, 3), (8, 4, 2, 1)
    layout: Layout = []
    in_c = 3
    for stage, (dim, depth, sr) in enumerate(zip(dims, depths, srs), start=1):
        kernel = 7 if stage == 1 else 3
        layout += conv(f"{prefix}patch_embed{stage}.proj", dim, in_c, kernel, kernel)
        layout += norm(f"{prefix}patch_embed{stage}.norm", dim)
        for i in range(depth):
            block = f"{prefix}block{stage}.{i}"
            layout += norm(f"{block}.norm1", dim)
            layout += linear(f"{block}.attn.q", dim, dim)
            layout += linear(f"{block}.attn.kv", 2 * dim, dim)
            if sr > 1:
                layout += conv(f"{block}.attn.sr", dim, dim, sr, sr)
                layout += norm(f"{block}.attn.norm", dim)
            layout += linear(f"{block}.attn.proj", dim, dim)
            layout += norm(f"{block}.norm2", dim)
            layout += linear(f"{block}.mlp.fc1", 4 * dim, dim)
            layout += conv(f"{block}.mlp.dwconv.dwconv", 4 * dim, 1, 3, 3)
            layout += linear(f"{block}.mlp.fc2", dim, 4 * dim)
        layout += norm(f"{prefix}norm{stage}", dim)
        in_c = dim
    if head:
        layout += linear(f"{prefix}head", 1000, 512)
    return layout


def resnet50(
    prefix: str = "", layer_names: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
) -> Layout:
    """torchvision / B2_ResNet bottleneck trunk; ``layer_names`` gives the 4 layer names."""
    layout: Layout = conv(f"{prefix}conv1", 64, 3, 7, 7, bias=False) + batchnorm(f"{prefix}bn1", 64)
    in_c = 64
    for layer, planes, blocks in zip(layer_names, (64, 128, 256, 512), (3, 4, 6, 3)):
        for i in range(blocks):
            block = f"{prefix}{layer}.{i}"
            layout += conv(f"{block}.conv1", planes, in_c, 1, 1, bias=False) + batchnorm(
                f"{block}.bn1", planes
            )
            layout += conv(f"{block}.conv2", planes, planes, 3, 3, bias=False) + batchnorm(
                f"{block}.bn2", planes
            )
            layout += conv(f"{block}.conv3", 4 * planes, planes, 1, 1, bias=False)
            layout += batchnorm(f"{block}.bn3", 4 * planes)
            if i == 0:
                layout += conv(f"{block}.downsample.0", 4 * planes, in_c, 1, 1, bias=False)
                layout += batchnorm(f"{block}.downsample.1", 4 * planes)
            in_c = 4 * planes
    return layout


def b2_resnet(prefix: str) -> Layout:
    """``B2_ResNet``: the trunk with ``layer3_1/layer4_1`` plus the dead ``layer3_2/layer4_2``."""
    trunk = resnet50(prefix, ("layer1", "layer2", "layer3_1", "layer4_1"))
    # The second branch starts again from 512 channels, so it has the shapes of layer3/layer4.
    second = [
        (name.replace("layer3_1", "layer3_2").replace("layer4_1", "layer4_2"), shape)
        for name, shape in trunk
        if "layer3_1" in name or "layer4_1" in name
    ]
    return trunk + second


def tpavi_rest(stage_channels: tuple[int, ...], num_classes: int, align_bias: bool) -> Layout:
    channel, inter = 256, 128
    layout: Layout = []
    for stage in (4, 3, 2, 1):  # construction order in Pred_endecoder
        for i in range(4):
            layout += conv(f"conv{stage}.conv2d_list.{i}", channel, stage_channels[stage - 1], 3, 3)
    for stage in (4, 3, 2, 1):
        for unit in (1, 2):
            for c in (1, 2):
                layout += conv(f"path{stage}.resConfUnit{unit}.conv{c}", channel, channel, 3, 3)
    for stage in (1, 2, 3, 4):
        block = f"tpavi_b{stage}"
        layout += linear(f"{block}.align_channel", channel, 128, bias=align_bias)
        layout += norm(f"{block}.norm_layer", channel)
        layout += conv(f"{block}.g", inter, channel, 1, 1, 1)
        layout += conv(f"{block}.W_z.0", channel, inter, 1, 1, 1) + batchnorm(f"{block}.W_z.1", channel)
        layout += conv(f"{block}.theta", inter, channel, 1, 1, 1)
        layout += conv(f"{block}.phi", inter, channel, 1, 1, 1)
    layout += conv("output_conv.0", 128, channel, 3, 3)
    layout += conv("output_conv.2", 32, 128, 3, 3)
    layout += conv("output_conv.4", num_classes, 32, 1, 1)
    return layout


def write(name: str, layout: Layout) -> None:
    names = [n for n, _ in layout]
    assert len(names) == len(set(names)), f"{name}: duplicate keys"
    lines = [f"{n}\t{','.join(str(d) for d in shape)}" for n, shape in layout]
    (OUT_DIR / name).write_text("\n".join(lines) + "\n")
    print(f"{name}: {len(lines)} tensors")


def main() -> None:
    pvt_channels, resnet_channels = (64, 128, 320, 512), (256, 512, 1024, 2048)
    write("vggish.tsv", vggish())
    write("pvt_v2_b5.tsv", pvt_v2_b5())
    write("resnet50_torchvision.tsv", resnet50() + linear("fc", 1000, 2048))
    write(
        "tpavi_pvt_v2_b5.tsv", pvt_v2_b5("encoder_backbone.", head=False) + tpavi_rest(pvt_channels, 1, True)
    )
    write(
        "tpavi_pvt_v2_b5_avss.tsv",
        pvt_v2_b5("encoder_backbone.", head=False) + tpavi_rest(pvt_channels, 71, False),
    )
    write("tpavi_resnet50.tsv", b2_resnet("resnet.") + tpavi_rest(resnet_channels, 1, True))


if __name__ == "__main__":
    main()
