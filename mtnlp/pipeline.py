"""MultiTaskPipeline: every head's answer for raw texts, from ONE encoder pass per batch.

Texts are split into words with the tokenizer's own pre-tokenizer (keeping character offsets), the
words are tokenised once, and each head reads the shared hidden states: sequence heads the [CLS]
position, tagging heads each word's first sub-token.
"""

from __future__ import annotations

import warnings

import torch
from transformers import AutoTokenizer

from . import precision as precision_policy
from .modeling import MultiTaskModel, to_device


class MultiTaskPipeline:
    """`precision`: auto (bf16 where the hardware runs it natively, else fp32; see precision.py),
    bf16, fp16 or fp32."""

    def __init__(self, model: MultiTaskModel, tokenizer, device: str | torch.device | None = None,
                 precision: str = "auto", batch_size: int = 32, max_length: int | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.precision = precision_policy.resolve(precision, self.device)
        if self.precision.warning:
            warnings.warn(self.precision.warning, stacklevel=2)
        self.batch_size = batch_size
        trained = (getattr(model.config, "mtnlp", None) or {}).get("max_length")
        self.max_length = max_length or trained or min(tokenizer.model_max_length, 512)

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device=None, precision: str = "auto", batch_size: int = 32,
                        max_length: int | None = None, **hub_kwargs) -> "MultiTaskPipeline":
        """Load a saved model folder or a hub id (hub_kwargs: revision, token, ...)."""
        model = MultiTaskModel.from_pretrained(name_or_path, **hub_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **hub_kwargs)
        return cls(model, tokenizer, device=device, precision=precision, batch_size=batch_size, max_length=max_length)

    @property
    def tasks(self) -> dict[str, dict]:
        return self.model.config.tasks

    def __call__(self, inputs: str | list[str], tasks: list[str] | None = None, return_all_scores: bool = False):
        """For one string, {task: prediction}; for a list, a list of those, in order."""
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        tasks = list(tasks or self.tasks)
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise KeyError(f"unknown task(s) {', '.join(unknown)}; the model has: {', '.join(self.tasks)}")
        words = [self.split_words(text) for text in texts]
        results: list[dict | None] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(words[i]))  # similar lengths share a batch
        truncated = 0
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = self.tokenizer([[w for w, _ in words[i]] for i in idx], is_split_into_words=True,
                                 truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
            inputs = to_device(dict(enc), self.device)
            with torch.no_grad(), self.precision.autocast():
                logits = self.model.forward_heads(inputs["input_ids"], inputs["attention_mask"],
                                                  inputs.get("token_type_ids"), tasks=tasks)
            logits = {t: v.float().cpu() for t, v in logits.items()}  # one copy per head and batch
            for j, i in enumerate(idx):
                first_tokens = first_subtokens(enc.word_ids(j))
                truncated += len(first_tokens) < len(words[i])
                results[i] = {t: self._decode(t, logits[t][j], words[i], first_tokens, texts[i], return_all_scores)
                              for t in tasks}
        if truncated:
            warnings.warn(f"{truncated} text(s) longer than max_length={self.max_length} tokens were truncated; "
                          "their sequence predictions see only the beginning and later words get no tags",
                          stacklevel=2)
        return results[0] if single else results

    def split_words(self, text: str) -> list[tuple[str, tuple[int, int]]]:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None and backend.pre_tokenizer is not None:
            return backend.pre_tokenizer.pre_tokenize_str(text)
        words, position = [], 0
        for word in text.split():
            start = text.index(word, position)
            words.append((word, (start, start + len(word))))
            position = start + len(word)
        return words

    def _decode(self, task: str, logits: torch.Tensor, words, first_tokens: list[int], text: str, all_scores: bool):
        spec = self.tasks[task]
        if spec["type"] == "regression":
            return {"value": float(logits)}
        labels = spec["labels"]
        if spec["type"] == "classification":
            probs = logits.softmax(-1)
            best = int(probs.argmax())
            out = {"label": labels[best], "score": float(probs[best])}
            if all_scores:
                out["scores"] = {label: float(p) for label, p in zip(labels, probs)}
            return out
        probs = logits[first_tokens].softmax(-1)  # one row per (kept) word
        scores, ids = probs.max(-1) if len(first_tokens) else (torch.empty(0), torch.empty(0, dtype=torch.long))
        tags = [labels[k] for k in ids.tolist()]
        kept = words[: len(first_tokens)]
        if is_iob(labels):
            return iob_spans(tags, scores.tolist(), kept, text)
        return [{"word": w, "tag": tag, "start": s, "end": e, "score": float(p)}
                for (w, (s, e)), tag, p in zip(kept, tags, scores.tolist())]


def first_subtokens(word_ids: list[int | None]) -> list[int]:
    """Token positions of each word's first sub-token, in word order."""
    out, previous = [], None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous:
            out.append(position)
        previous = word
    return out


def is_iob(labels: list[str]) -> bool:
    return any(label.startswith(("B-", "I-")) for label in labels)


def iob_spans(tags: list[str], scores: list[float], words, text: str) -> list[dict]:
    """Decode IOB2 word tags into entity spans with character offsets; score = mean word score.

    An I- tag that does not continue an entity of the same type starts a new one (as seqeval's
    lenient decoding does), so no predicted word is dropped.
    """
    spans, current = [], None
    for tag, score, (_, (start, end)) in zip(tags, scores, words):
        prefix, _, kind = tag.partition("-")
        if prefix == "I" and current is not None and current["type"] == kind:
            current["end"] = end
            current["scores"].append(score)
            continue
        if current is not None:
            spans.append(current)
            current = None
        if prefix in ("B", "I"):
            current = {"type": kind, "start": start, "end": end, "scores": [score]}
    if current is not None:
        spans.append(current)
    return [{"type": s["type"], "text": text[s["start"]:s["end"]], "start": s["start"], "end": s["end"],
             "score": sum(s["scores"]) / len(s["scores"])} for s in spans]
