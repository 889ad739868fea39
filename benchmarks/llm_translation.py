"""LLM translation: throughput against a local OpenAI-compatible server, cache reruns, parser speed, and
the token count / cost per S4 video of the packaged prompts at gpt-4o-mini prices.

- Throughput: a local ``ThreadingHTTPServer`` answers /v1/chat/completions after a fixed delay
  (``--latency``, standing in for the API's response time; the paper measured 0.729 s on average
  for GPT-4o-mini), and ``translate_many`` labels ``--clips`` S4-like clips (5 frames x 3 Pengi-style
  descriptions, ``prompt_frame``) at several concurrency limits, then once more from the disk cache.
- Parser: responses parsed per second (per-frame layout, 5 frames).
- Cost: input tokens of each strategy's request for one S4 clip, counted with the gpt-4o-mini
  tokenizer (o200k_base) when the ``bpe-openai`` package is installed, plus OpenAI's chat overhead of
  3 tokens per message and 3 for the reply. The output is a 5-line answer for the per-frame
  strategies; for ``model`` (reasoning first) ``--model-output-tokens`` per request is assumed.

    python benchmarks/llm_translation.py [--clips 64] [--latency 0.25] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pseudolabel import llm

AUDIO = [  # Pengi-style outputs for the prompts "this is a sound of", "generate metadata", "generate audio caption"
    ["a dog barking and a man speaking", "dog. barking dog, domestic animal", "a dog barks several times"],
    ["a dog is barking loudly", "animal sounds. dog", "a dog barks while wind blows"],
    ["a man is talking", "speech. male voice", "a man speaks and a dog barks"],
    ["a dog growls", "dog growling, animal", "a dog growls at something"],
    ["a dog barks", "dog", "the sound of a dog barking outside"],
]
IMAGE = (
    "The image shows a brown dog standing on a lawn in front of a wooden fence. A man in a blue "
    "jacket stands to the left holding a leash. Trees and a house are visible in the background and "
    "the weather looks overcast."
)
ANSWER = "\n".join("<answer>dog</answer>" for _ in AUDIO)
# Chat formatting overhead per request (OpenAI cookbook token-counting recipe): 3 per message, 3 for the reply.
TOKENS_PER_MESSAGE, REPLY_PRIMING_TOKENS = 3, 3


def s4_clip(clip_id: str) -> llm.ClipDescriptions:
    return llm.ClipDescriptions.from_lists(
        clip_id, audio=[[f"{text} ({clip_id})" for text in frame] for frame in AUDIO], image=[[IMAGE]] * len(AUDIO)
    )


def serve(latency_s: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(latency_s)
            data = json.dumps(
                {
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 400, "completion_tokens": 30, "total_tokens": 430},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256  # the default listen backlog (5) refuses bursts of connections

    httpd = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd


def throughput(clips: int, latency_s: float, limits: list[int]) -> list[tuple[str, float, float]]:
    import openai  # noqa: F401  (imported before timing: the translator imports it on first use)

    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-not-a-key")
    httpd = serve(latency_s)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    batch = [s4_clip(f"clip{i:04d}") for i in range(clips)]
    rows = []
    with tempfile.TemporaryDirectory() as cache_dir:
        for limit in limits:
            translator = llm.create("openai", base_url=url, concurrency=limit, cache_dir=f"{cache_dir}/{limit}")
            start = time.perf_counter()
            results = translator.translate_many(batch)
            seconds = time.perf_counter() - start
            assert all(r.record.frame_status == ["ok"] * 5 for r in results)
            rows.append((f"concurrency {limit}", seconds, clips / seconds))
        start = time.perf_counter()
        results = translator.translate_many(batch)
        seconds = time.perf_counter() - start
        assert all(r.record.cache_hit for r in results)
        rows.append(("rerun from disk cache", seconds, clips / seconds))
    httpd.shutdown()
    return rows


def parser_rate(repeats: int = 20000) -> float:
    strategy = llm.get_strategy("prompt_frame")
    response = "Sure.\n<answer>Dog, man</answer>\n<answer>dog</answer>\n<answer>none</answer>\n" \
               "<answer>frame 3: dog</answer>\n<answer>Dog; wind.</answer>"
    start = time.perf_counter()
    for _ in range(repeats):
        strategy.parse(response, 5)
    return repeats / (time.perf_counter() - start)


def cost_table(model_output_tokens: int) -> tuple[str, list[tuple[str, int, int, int, float]]]:
    try:
        import bpe_openai

        encoding = bpe_openai.encoding_for_model("gpt-4o-mini")
        count, counter = (lambda text: len(encoding.encode(text))), "o200k_base (bpe-openai)"
    except ImportError:
        count, counter = (lambda text: max(1, round(len(text) / 4))), "approximation: 4 characters per token"
    price_in, price_out = llm.create("openai").prices["gpt-4o-mini"]
    clip = llm.ClipDescriptions.from_lists("s4", audio=AUDIO, image=[[IMAGE]] * len(AUDIO))
    rows = []
    for name in llm.STRATEGIES:
        translator = llm.create("openai", strategy=name)
        requests = translator.strategy.build_requests(clip)
        tokens_in = sum(
            sum(count(m["content"]) + TOKENS_PER_MESSAGE for m in translator.messages(r)) + REPLY_PRIMING_TOKENS
            for r in requests
        )
        tokens_out = model_output_tokens * len(requests) if name == "model" else count(ANSWER)
        cost = (tokens_in * price_in + tokens_out * price_out) / 1e6
        rows.append((name, len(requests), tokens_in, tokens_out, cost))
    return counter, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.25, help="server delay per request, seconds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--model-output-tokens", type=int, default=150)
    args = parser.parse_args()

    print(f"## Throughput: {args.clips} S4 clips (prompt_frame), server latency {args.latency:g} s per request\n")
    print("| run | wall time (s) | clips/s |\n|---|---|---|")
    for label, seconds, rate in throughput(args.clips, args.latency, args.concurrency):
        print(f"| {label} | {seconds:.2f} | {rate:.1f} |")
    print(f"\n## Parser\n\n{parser_rate():,.0f} responses/s (5 frames, per-frame layout)\n")
    counter, rows = cost_table(args.model_output_tokens)
    print(f"## Tokens and cost per S4 video at gpt-4o-mini prices ($0.15 / $0.60 per 1M), tokenizer: {counter}\n")
    print("| strategy | requests | input tokens | output tokens | cost (USD) |\n|---|---|---|---|---|")
    for name, n_requests, tokens_in, tokens_out, cost in rows:
        assumed = " (assumed)" if name == "model" else ""
        print(f"| {name} | {n_requests} | {tokens_in} | {tokens_out}{assumed} | {cost:.6f} |")
    print("\nPaper (Table 3): OpenAVS-Lite (prompt_frame) $0.000154, OpenAVS (model + prompt) $0.00135 per video.")


if __name__ == "__main__":
    main()
