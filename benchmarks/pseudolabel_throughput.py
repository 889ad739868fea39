"""Throughput of the OpenAVS labeler: overlapped stages vs a serial loop, and vs the slowest stage alone.

A local OpenAI-compatible server answers every chat request after ``--latency`` seconds (0.7 s: the
OpenAVS paper's mean gpt-4o-mini latency); the ALM is a tiny random AST tagger, the grounder and segmenter
are small random GroundingDINO / SAM 2 models (built offline, saved and loaded with from_pretrained).
Measured on the synthetic S4 layout:

- each stage alone: load + describe, LLM translation (``translate_many``, ``--concurrency`` requests in
  flight), ground + segment (frames batched), store writing;
- the serial loop (``pipeline.overlap=false``): one clip at a time through every stage;
- the overlapped pipeline (``run_labeler`` default).

Usage: ``python benchmarks/pseudolabel_throughput.py [--clips 24] [--latency 0.7] [--concurrency 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "dog", "cat", "man", "guitar"]


def serve(latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            time.sleep(latency)
            frames = re.findall(r"<frame(\d+)>(?:<exp1>)?(.*?)(?:</exp1>|</frame)", body["messages"][1]["content"])
            answer = "\n".join(f"<answer>{text}</answer>" for _, text in frames)
            payload = json.dumps({
                "id": "b", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    return httpd


def build_models(root: Path, sam_size: int) -> dict[str, Path]:
    import torch
    import transformers

    from pseudolabel import alm

    torch.manual_seed(0)
    tagger = alm.create_alm("ast", config={"id2label": {0: "dog", 1: "cat", 2: "man"}}, top_k=1)
    tagger.lazy.processor.save_pretrained(root / "ast")
    tagger.lazy.model.save_pretrained(root / "ast")
    tokenizer = transformers.BertTokenizer(vocab={word: index for index, word in enumerate(WORDS)})
    transformers.GroundingDinoForObjectDetection(
        transformers.GroundingDinoConfig(
            backbone_config=transformers.SwinConfig(
                embed_dim=24, depths=[1, 1, 1, 1], num_heads=[2, 2, 4, 4], out_features=["stage2", "stage3", "stage4"]
            ),
            text_config=transformers.BertConfig(
                hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, vocab_size=len(WORDS)
            ),
            d_model=64, num_queries=10, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
            encoder_attention_heads=4, decoder_attention_heads=4,
        )
    ).save_pretrained(root / "dino")
    transformers.GroundingDinoProcessor(
        image_processor=transformers.GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 128}),
        tokenizer=tokenizer,
    ).save_pretrained(root / "dino")
    size = sam_size
    transformers.Sam2Model(
        transformers.Sam2Config(
            vision_config=dict(
                backbone_config=dict(
                    model_type="sam2_hiera_det_model", hidden_size=16, embed_dim_per_stage=[16, 32, 64, 128],
                    blocks_per_stage=[1, 1, 2, 1], num_attention_heads_per_stage=[1, 1, 2, 2],
                    global_attention_blocks=[3], image_size=[size, size], window_size_per_stage=[8, 4, 4, 4],
                    window_positional_embedding_background_size=[4, 4],
                ),
                backbone_channel_list=[128, 64, 32, 16],
                backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2],
                fpn_hidden_size=64,
            ),
            prompt_encoder_config=dict(hidden_size=64, image_size=size),
            mask_decoder_config=dict(hidden_size=64, mlp_dim=128, num_attention_heads=2, iou_head_hidden_dim=64),
        )
    ).save_pretrained(root / "sam2")
    transformers.Sam2Processor(
        image_processor=transformers.Sam2ImageProcessor(size={"height": size, "width": size})
    ).save_pretrained(root / "sam2")
    return {name: root / name for name in ("ast", "dino", "sam2")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--latency", type=float, default=0.7)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--frame-size", type=int, default=128)
    parser.add_argument("--sam-size", type=int, default=128)
    parser.add_argument("--frame-batch", type=int, default=10)
    args = parser.parse_args()

    import torch

    from openavs_st.data.sources import AVSBenchSource
    from openavs_st.data.store import StoreWriter
    from openavs_st.data.synthetic import write_synthetic
    from pseudolabel.openavs import OpenAVSLabeler
    from pseudolabel.runner import run_labeler

    work = Path(tempfile.mkdtemp(prefix="pl_bench_"))
    server = serve(args.latency)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    models = build_models(work / "models", args.sam_size)
    root = write_synthetic(work / "data", ("s4",), splits={"test": args.clips}, size=args.frame_size, seed=0)["s4"]
    config = {
        "name": "bench",
        "alm": {"tags": {"name": "ast", "model": str(models["ast"]), "top_k": 1}},
        "llm": {"name": "openai", "model": "gpt-4o-mini", "strategy": "prompt_frame", "base_url": url,
                "concurrency": args.concurrency, "cache_dir": None},
        "grounder": {"name": "grounding_dino", "model": str(models["dino"]), "batch_size": 5},
        "segmenter": {"name": "sam2", "model": str(models["sam2"]), "batch_size": 5},
    }
    labeler = OpenAVSLabeler.from_config(config)
    source = AVSBenchSource("avsbench_s4", root, "test")
    labeler.load_models()
    for clip_id in source.ids[:2]:  # warm-up
        labeler.finish([_with_phrases(labeler.prepare(source, clip_id))])

    frames = 5 * args.clips
    stage: dict[str, float] = {}
    start = time.perf_counter()
    items = [labeler.prepare(source, clip_id) for clip_id in source.ids]
    stage["load + ALM describe"] = time.perf_counter() - start
    start = time.perf_counter()
    translations = labeler.translator.translate_many([item.descriptions() for item in items])
    stage[f"LLM ({args.latency} s/request, {args.concurrency} in flight)"] = time.perf_counter() - start
    for item, translation in zip(items, translations):
        labeler.apply_translation(item, translation)
    start = time.perf_counter()
    results = []
    for index in range(0, len(items), max(1, args.frame_batch // 5)):
        results.extend(labeler.finish(items[index : index + max(1, args.frame_batch // 5)]))
    stage["ground + segment"] = time.perf_counter() - start
    writer = StoreWriter(work / "stage_write", labeler="bench")
    start = time.perf_counter()
    for item, (masks, record) in zip(items, results):
        writer.write(item.clip, masks, record)
    stage["store write"] = time.perf_counter() - start
    slowest_name = max(stage, key=stage.get)
    slowest_fps = frames / stage[slowest_name]

    serial = run_labeler(labeler, source, StoreWriter(work / "serial", labeler="bench"), overlap=False, progress=False)
    overlapped = run_labeler(
        labeler, source, StoreWriter(work / "overlapped", labeler="bench"), overlap=True, progress=False,
        frame_batch=args.frame_batch, max_in_flight=max(16, 2 * args.concurrency),
    )
    assert serial.clips_ok == overlapped.clips_ok == args.clips, (serial.failures, overlapped.failures)
    serial_fps, overlapped_fps = frames / serial.seconds, frames / overlapped.seconds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.clips} clips x 5 frames "
          f"({args.frame_size}x{args.frame_size}), LLM latency {args.latency} s, concurrency {args.concurrency}")
    print("| stage alone | seconds | frames/s |")
    print("|---|---|---|")
    for name, seconds in stage.items():
        print(f"| {name} | {seconds:.2f} | {frames / seconds:.1f} |")
    print()
    print("| run | seconds | frames/s | vs slowest stage |")
    print("|---|---|---|---|")
    print(f"| serial loop | {serial.seconds:.2f} | {serial_fps:.2f} | {serial_fps / slowest_fps:.2f} |")
    print(f"| overlapped pipeline | {overlapped.seconds:.2f} | {overlapped_fps:.2f} | {overlapped_fps / slowest_fps:.2f} |")
    print(f"\nslowest stage: {slowest_name} ({slowest_fps:.2f} frames/s); overlapped / serial = "
          f"{overlapped_fps / serial_fps:.2f}x")
    server.shutdown()


def _with_phrases(item: Any) -> Any:
    item.phrases, item.pending = [["dog"]] * item.frames, False
    return item


if __name__ == "__main__":
    main()
