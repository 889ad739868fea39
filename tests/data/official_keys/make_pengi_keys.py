"""Write ``pengi_base.tsv`` and ``pengi_base_no_text_enc.tsv`` (``name<TAB>shape`` per line): the state-dict
layout of microsoft/Pengi's ``PENGI`` as its ``wrapper.py`` builds it, i.e. the keys of ``base.pth`` /
``base_no_text_enc.pth`` (the wrapper loads them with a strict ``load_state_dict``).

Unlike the other generators here this one runs the original code, in the environment of its
``requirements.txt`` (transformers 4.28.1, torchlibrosa 0.1.0, librosa 0.10.0.post2): constant buffers of
that transformers version (GPT-2 ``attn.bias`` / ``attn.masked_bias``, CLIP ``embeddings.position_ids``)
are part of the saved layout. GPT-2 and CLIP are built from ``GPT2Config()`` (= ``gpt2``) and
``CLIPConfig()`` (its text tower = ``openai/clip-vit-base-patch16``'s) instead of being downloaded.

    python tests/data/official_keys/make_pengi_keys.py /path/to/microsoft-Pengi-checkout   # at 31d5e37
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pengi_repo", type=Path)
    repo = parser.parse_args().pengi_repo.resolve()
    sys.path.insert(0, str(repo))

    import transformers
    import yaml
    from transformers import CLIPConfig, CLIPModel, GPT2Config, GPT2LMHeadModel

    transformers.AutoModel.from_pretrained = staticmethod(lambda name: CLIPModel(CLIPConfig()))
    import models.decoder as decoder  # noqa: E402 - the original package, from the checkout

    decoder.GPT2LMHeadModel = type(
        "OfflineGPT2", (), {"from_pretrained": staticmethod(lambda name: GPT2LMHeadModel(GPT2Config()))}
    )
    from models.pengi import PENGI

    for name in ("base", "base_no_text_enc"):
        a = yaml.safe_load((repo / "configs" / f"{name}.yml").read_text())
        data = a["dataset_config"]
        model = PENGI(
            audioenc_name=a["audioenc_name"], sample_rate=data["sampling_rate"], window_size=a["window_size"],
            hop_size=a["hop_size"], mel_bins=a["mel_bins"], fmin=a["fmin"], fmax=a["fmax"], classes_num=None,
            out_emb=a["out_emb"], specaug=a["specaug"], mixup=a["mixup"], use_text_encoder=a["use_text_model"],
            text_encoder=a["text_model"] if a["use_text_model"] else a["text_decoder"],
            text_encoder_embed_dim=a["transformer_embed_dim"],
            freeze_text_encoder_weights=a["freeze_text_encoder_weights"], text_decoder=a["text_decoder"],
            prefix_length=a["prefix_length"], clip_length=a["prefix_length_clip"], prefix_size=a["d_proj"],
            num_layers=a["num_layers"], normalize_prefix=a["normalize_prefix"], mapping_type=a["mapping_type"],
            freeze_text_decoder_weights=a["freeze_gpt_weights"], d_proj=a["d_proj"],
            use_pretrained_audioencoder=a["use_pretrained_audioencoder"],
            freeze_audio_encoder_weights=a["freeze_audio_encoder_weights"],
        )  # fmt: skip
        lines = [f"{key}\t{','.join(map(str, t.shape))}" for key, t in model.state_dict().items()]
        (OUT_DIR / f"pengi_{name}.tsv").write_text("\n".join(lines) + "\n")
        print(name, len(lines), "tensors")


if __name__ == "__main__":
    main()
