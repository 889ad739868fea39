"""Pengi's beam search, batched, and the clean-up of its texts.

:func:`beam_search` re-states microsoft/Pengi ``wrapper.py`` ``_generate_beam`` for a batch of prefixes
(one per (segment, prompt) pair), each searched independently with the original's rules:

- step 1: the ``beam`` most likely first tokens; later steps: every (beam, token) candidate scored by
  (sum of log-probabilities) / (its length), the ``beam`` best kept (length-normalised ranking);
- a beam that produced the stop token is finished: it only extends with token 0 at no cost and its
  length stops growing; the search of a prefix ends when all its beams are finished or after
  ``max_len`` tokens;
- logits are divided by ``temperature`` (1.0: unchanged);
- the beams are returned best first by final score / length.

Differences: the decoder runs with a key/value cache (the original re-runs the whole sequence at each
step; same maths, float rounding aside), prefixes of a batch are searched together (a finished prefix
is frozen until the batch ends), and ties are broken by beam order (stable sort).

The stop token: the original stops at ``tokenizer.encode(' <|endoftext|>')[0]``, the first token of the
stop string; for GPT-2 that is ``'Ġ'`` (a lone space, id 220) that precedes ``<|endoftext|>`` in the
training captions. :func:`stop_ids` keeps that id and adds the tokenizer's end-of-text id.

:func:`clean_text` cuts the text at ``<|endoftext|>``, strips it, and caps runaway repetition (microsoft/Pengi
issue #13, generic GPT-2 loops): a run of the same word n-gram (n = 1..4) repeated back to back is cut
to its first :data:`MAX_REPEATS` occurrences, shortest n first.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

MAX_REPEATS = 2
END_OF_TEXT = "<|endoftext|>"


@dataclass(frozen=True)
class Beams:
    """The beams of one prefix, best first: token ids (stop token included) and length-normalised scores."""

    tokens: list[list[int]]
    scores: list[float]


def stop_ids(tokenizer, stop_token: str = " " + END_OF_TEXT) -> tuple[int, ...]:
    """The token ids that finish a beam: the first token of ``stop_token`` (the original's rule) and the
    tokenizer's end-of-text id."""
    ids = tokenizer.encode(stop_token, add_special_tokens=False)
    if not ids:
        raise ValueError(f"stop_token {stop_token!r} encodes to no token")
    found = [ids[0]]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in found:
        found.append(int(tokenizer.eos_token_id))
    return tuple(found)


@torch.inference_mode()
def beam_search(
    gpt, prefix: torch.Tensor, *, beam: int = 3, max_len: int = 30, temperature: float = 1.0,
    stop: Sequence[int] = (220,),
) -> list[Beams]:  # fmt: skip
    """Beam search from ``prefix`` ``[B, L, n_embd]`` (decoder input embeddings) with a ``GPT2LMHeadModel``.

    Returns:
        One :class:`Beams` per prefix.
    """
    from transformers import DynamicCache

    if beam < 1 or max_len < 1:
        raise ValueError(f"beam and max_len must be >= 1, got {beam=}, {max_len=}")
    batch = prefix.shape[0]
    device = prefix.device
    wte = gpt.transformer.wte
    stop_tensor = torch.tensor(list(stop), device=device)
    temp = temperature if temperature > 0 else 1.0

    cache = DynamicCache(config=gpt.config)
    # transformers 5.2x renamed past_key_values to cache
    cache_arg = "cache" if "cache" in inspect.signature(gpt.forward).parameters else "past_key_values"
    logits = gpt(inputs_embeds=prefix, use_cache=True, **{cache_arg: cache}).logits[:, -1].float()
    logp = (logits / temp).log_softmax(-1)  # [B, V]
    vocab = logp.shape[-1]
    scores, first = logp.topk(beam, dim=-1)  # [B, beam]
    tokens = first[:, :, None]  # [B, beam, t]
    cache.reorder_cache(torch.arange(batch, device=device).repeat_interleave(beam))
    lengths = torch.ones(batch, beam, device=device)
    stopped = torch.isin(first, stop_tensor)
    rows = torch.arange(batch, device=device)[:, None] * beam

    for _ in range(max_len - 1):
        done = stopped.all(dim=1)  # [B]: prefixes whose search has ended
        if bool(done.all()):
            break
        embeds = wte(tokens[:, :, -1].reshape(-1))[:, None, :]
        logits = gpt(inputs_embeds=embeds, use_cache=True, **{cache_arg: cache}).logits[:, -1].float()
        logp = (logits / temp).log_softmax(-1).view(batch, beam, vocab)
        logp = logp.masked_fill(stopped[:, :, None], float("-inf"))
        logp[..., 0] = torch.where(stopped, torch.zeros_like(logp[..., 0]), logp[..., 0])
        grown = lengths + (~stopped).float()
        average = (scores[:, :, None] + logp) / grown[:, :, None]
        best, index = average.view(batch, -1).topk(beam, dim=-1)
        source, token = index // vocab, index % vocab
        keep = torch.arange(beam, device=device).expand(batch, beam)
        source = torch.where(done[:, None], keep, source)
        new_lengths = grown.gather(1, source)
        new_scores = best * new_lengths
        new_stopped = stopped.gather(1, source) | torch.isin(token, stop_tensor)
        token = torch.where(done[:, None], torch.zeros_like(token), token)
        lengths = torch.where(done[:, None], lengths, new_lengths)
        scores = torch.where(done[:, None], scores, new_scores)
        stopped = torch.where(done[:, None], stopped, new_stopped)
        tokens = torch.cat([tokens.gather(1, source[:, :, None].expand_as(tokens)), token[:, :, None]], dim=2)
        cache.reorder_cache((rows + source).reshape(-1))

    final = scores / lengths
    results = []
    for b in range(batch):
        order = torch.argsort(final[b], descending=True, stable=True).tolist()
        results.append(
            Beams(
                tokens=[tokens[b, i, : int(lengths[b, i])].tolist() for i in order],
                scores=[float(final[b, i]) for i in order],
            )
        )
    return results


def cap_repetition(words: list[str], max_repeats: int = MAX_REPEATS, max_n: int = 4) -> list[str]:
    """Cut every back-to-back run of one word n-gram (n = 1..``max_n``, shortest first) to ``max_repeats``."""
    for n in range(1, max_n + 1):
        out: list[str] = []
        i = 0
        while i < len(words):
            gram = words[i : i + n]
            run = 1
            while len(gram) == n and words[i + run * n : i + (run + 1) * n] == gram:
                run += 1
            if run > max_repeats:
                out.extend(gram * max_repeats)
                i += run * n
            else:
                out.append(words[i])
                i += 1
        words = out
    return words


def clean_text(text: str, max_repeats: int = MAX_REPEATS) -> str:
    """Text before ``<|endoftext|>``, whitespace-normalised, with runaway repetition capped."""
    text = text.split(END_OF_TEXT, 1)[0]
    return " ".join(cap_repetition(text.split(), max_repeats))
