"""Pengi parity: our implementation (transformers 5) against microsoft/Pengi's own code, same random weights.

The reference side runs the original ``PENGI`` and ``PengiWrapper`` methods from a microsoft/Pengi checkout
in a second Python environment with the original's pinned versions (``requirements.txt``: transformers
4.28.1, torchlibrosa 0.1.0, librosa 0.10.0.post2; GPT-2 / CLIP built from ``GPT2Config()`` /
``CLIPConfig()`` instead of downloaded). It saves the randomly initialised full-size ``base`` model as a
``base.pth`` checkpoint ({'model': state_dict}) and, for a 7 s chirp and a tokenised prompt, the HTS-AT
embedding, the audio and prompt prefixes (``_get_audio_embeddings`` / ``_get_audio_prefix`` /
``_get_prompts_prefix``) and the beams of ``_generate_beam`` (beam 3, 30 tokens). GPT-2's matrices are
scaled by 10 so its next-token distribution is peaked and the beams depend on the prefix.

This side loads that checkpoint with ``PengiModel.load_original_state_dict`` and compares; it also compares
the STFT kernels and mel matrices our code computes with torchlibrosa's and librosa's.

    python benchmarks/pengi_parity.py --pengi-repo /src/Pengi --original-python /venvs/pengi/bin/python
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

MELS = [(32000, 1024, 64, 14000), (44100, 1024, 64, 8000), (8000, 512, 16, 4000)]  # sr, n_fft, mel bins, fmax


def reference(repo: Path, out: Path) -> None:
    """Run under the original environment: build, save and compute the reference outputs."""
    sys.path.insert(0, str(repo))
    import numpy as np
    import torch
    import transformers
    from transformers import CLIPConfig, CLIPModel, GPT2Config, GPT2LMHeadModel

    transformers.AutoModel.from_pretrained = staticmethod(lambda name: CLIPModel(CLIPConfig()))
    import models.decoder as decoder

    decoder.GPT2LMHeadModel = type(
        "OfflineGPT2", (), {"from_pretrained": staticmethod(lambda name: GPT2LMHeadModel(GPT2Config()))}
    )
    from models.pengi import PENGI
    from wrapper import PengiWrapper

    torch.manual_seed(0)
    model = PENGI(
        audioenc_name="HTSAT", sample_rate=44100, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=8000,
        classes_num=None, out_emb=768, specaug=False, mixup=False, use_text_encoder=True,
        text_encoder="openai/clip-vit-base-patch16", text_encoder_embed_dim=512, freeze_text_encoder_weights=True,
        text_decoder="gpt2", prefix_length=40, clip_length=40, prefix_size=1024, num_layers=8, normalize_prefix=True,
        mapping_type="transformer", freeze_text_decoder_weights=True, d_proj=1024, use_pretrained_audioencoder=False,
        freeze_audio_encoder_weights=False,
    ).eval()  # fmt: skip
    with torch.no_grad():
        htsat = model.audio_encoder.base.htsat
        htsat.bn0.running_mean.fill_(-40.0)
        htsat.bn0.running_var.fill_(400.0)
        for p in model.caption_decoder.gpt.parameters():
            if p.dim() == 2:
                p.mul_(10)
    torch.save({"model": model.state_dict()}, out / "base.pth")
    t = np.arange(7 * 44100) / 44100
    wave = torch.from_numpy((0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32))[None]
    ids = torch.tensor([[49406, 1000, 2000, 3000, 49407] + [49407] * 35])
    mask = torch.tensor([[1] * 5 + [0] * 35])

    class IdTokenizer:  # _generate_beam's stop token id: encode(' <|endoftext|>')[0] = 220 for GPT-2
        def encode(self, text):
            return [220]

        def decode(self, ids):
            return " ".join(map(str, ids))

    wrapper = PengiWrapper.__new__(PengiWrapper)
    wrapper.model, wrapper.dec_tokenizer = model, IdTokenizer()
    wrapper.args = type("Args", (), {"normalize_prefix": True, "use_text_model": True})()
    with torch.no_grad():
        latent = htsat(wave)["latent_output"]
        audio_prefix = wrapper._get_audio_prefix(wrapper._get_audio_embeddings(wave[:, None, :]))
        prompt_prefix = wrapper._get_prompts_prefix(wrapper._get_prompts_embeddings({"input_ids": ids, "attention_mask": mask}))
        texts, scores = wrapper._generate_beam(
            beam_size=3, embed=torch.cat([audio_prefix[0], prompt_prefix[0]], 0)[None], entry_length=30, temperature=1.0
        )
    beams = [[int(i) for i in text.split()] for text in texts]
    # the front-end constants our code computes itself (used when a checkpoint is built, not loaded)
    import librosa
    from torchlibrosa.stft import STFT

    stft = STFT(n_fft=1024, hop_length=320, win_length=1024, window="hann", center=True, pad_mode="reflect")
    mels = {f"{sr}_{n_fft}_{n_mels}_{fmax}": torch.from_numpy(librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=50, fmax=fmax)) for sr, n_fft, n_mels, fmax in MELS}  # fmt: skip
    torch.save({"wave": wave, "ids": ids, "mask": mask, "latent": latent, "audio_prefix": audio_prefix,
                "prompt_prefix": prompt_prefix, "beams": beams, "scores": scores, "mels": mels,
                "conv_real": stft.conv_real.weight.detach(), "conv_imag": stft.conv_imag.weight.detach()},
               out / "reference.pt")  # fmt: skip


def compare(out: Path) -> None:
    import torch
    from transformers import CLIPTextConfig, GPT2Config

    from pseudolabel.alm.pengi.decode import beam_search
    from pseudolabel.alm.pengi.htsat import dft_kernels, slaney_mel
    from pseudolabel.alm.pengi.model import PengiConfig, build_model, read_checkpoint

    ref = torch.load(out / "reference.pt", weights_only=True)
    model = build_model(PengiConfig.named("base"), GPT2Config(), CLIPTextConfig(projection_dim=512))
    model.load_original_state_dict(read_checkpoint(out / "base.pth"), source="the reference base.pth")
    with torch.inference_mode():
        latent = model.audio_encoder.base.htsat(ref["wave"])
        audio_prefix = model.audio_prefix(ref["wave"])
        prompt_prefix = model.prompt_prefix(ref["ids"], ref["mask"])
        beams = beam_search(model.gpt, torch.cat([audio_prefix, prompt_prefix], 1), beam=3, max_len=30, stop=(220,))[0]
    print(f"torch {torch.__version__}; full-size base, random weights (GPT-2 matrices x10)")
    for name, ours in (("HTS-AT embedding", latent), ("audio prefix", audio_prefix), ("prompt prefix", prompt_prefix)):
        theirs = ref["latent" if name.startswith("HTS") else name.replace(" ", "_")]
        print(f"{name:17s}: max |diff| {(ours - theirs).abs().max().item():.2e} (max |value| {theirs.abs().max().item():.2f})")
    print(f"beam tokens identical: {beams.tokens == ref['beams']} ({len(beams.tokens[0])} tokens each)")
    print(f"beam scores ours     : {[round(s, 5) for s in beams.scores]}")
    print(f"beam scores original : {[round(float(s), 5) for s in ref['scores']]}")
    real, imag = dft_kernels(1024)
    stft_diff = max((real - ref["conv_real"]).abs().max().item(), (imag - ref["conv_imag"]).abs().max().item())
    print(f"STFT kernels vs torchlibrosa 0.1.0 (n_fft 1024): max |diff| {stft_diff:.2e}")
    for sr, n_fft, n_mels, fmax in MELS:
        theirs = ref["mels"][f"{sr}_{n_fft}_{n_mels}_{fmax}"]
        diff = (torch.from_numpy(slaney_mel(sr, n_fft, n_mels, 50, fmax)) - theirs).abs().max().item()
        print(f"mel matrix vs librosa ({sr} Hz, n_fft {n_fft}, {n_mels} mels, 50-{fmax} Hz): max |diff| {diff:.2e} "
              f"(max {theirs.max().item():.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pengi-repo", type=Path, required=True, help="a microsoft/Pengi checkout (31d5e37)")
    parser.add_argument("--original-python", help="python of the original environment (runs the reference)")
    parser.add_argument("--reference-only", type=Path, help=argparse.SUPPRESS)  # the subprocess's mode
    args = parser.parse_args()
    if args.reference_only:
        reference(args.pengi_repo.resolve(), args.reference_only)
        return
    if not args.original_python:
        parser.error("--original-python is required (an environment with transformers 4.28.1 and torchlibrosa)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [args.original_python, __file__, "--pengi-repo", str(args.pengi_repo), "--reference-only", tmp],
            check=True, cwd=args.pengi_repo,
        )  # fmt: skip
        compare(Path(tmp))


if __name__ == "__main__":
    main()
