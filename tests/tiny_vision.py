"""Tiny random GroundingDINO and SAM 2 (config, processor) pairs shared by the grounder/segmenter and
pipeline tests: the real transformers classes at toy size, built offline."""

from __future__ import annotations

from collections.abc import Sequence

import transformers


def tiny_grounding_dino(
    vocab: Sequence[str], *, num_queries: int = 20, shortest_edge: int = 64, longest_edge: int = 96
) -> tuple[transformers.GroundingDinoConfig, transformers.GroundingDinoProcessor]:
    """GroundingDINO (~0.9M parameters) with a word-level BERT tokenizer over ``vocab``."""
    tokenizer = transformers.BertTokenizer(vocab={word: index for index, word in enumerate(vocab)})
    image_processor = transformers.GroundingDinoImageProcessor(
        size={"shortest_edge": shortest_edge, "longest_edge": longest_edge}
    )
    processor = transformers.GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = transformers.GroundingDinoConfig(
        backbone_config=transformers.SwinConfig(
            embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], out_features=["stage2", "stage3", "stage4"]
        ),
        text_config=transformers.BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=len(vocab)
        ),
        d_model=32,
        num_queries=num_queries,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
    )
    return config, processor


def tiny_sam2(size: int = 128) -> tuple[transformers.Sam2Config, transformers.Sam2Processor]:
    """SAM 2 (Hiera at 8..64 channels) for ``size`` x ``size`` inputs."""
    config = transformers.Sam2Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam2_hiera_det_model",
                hidden_size=8,
                embed_dim_per_stage=[8, 16, 32, 64],
                blocks_per_stage=[1, 1, 2, 1],
                num_attention_heads_per_stage=[1, 1, 1, 1],
                global_attention_blocks=[3],
                image_size=[size, size],
                window_size_per_stage=[4, 4, 4, 4],
                window_positional_embedding_background_size=[2, 2],
            ),
            backbone_channel_list=[64, 32, 16, 8],
            backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2],
            fpn_hidden_size=32,
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=size),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    )
    image_processor = transformers.Sam2ImageProcessor(size={"height": size, "width": size})
    return config, transformers.Sam2Processor(image_processor=image_processor)
