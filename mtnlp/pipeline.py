"""MultiTaskPipeline: every head's answer for raw texts, from ONE encoder pass per batch for the
text and tagging heads (with LoRA adapters: one pass per task); multiple-choice and QA heads take
their own inputs and passes.

Texts are split into words at spaces and punctuation (keeping character offsets), the words are
tokenised, and each head reads the shared hidden states: sequence heads pool them as their family
does (e.g. the first token), tagging heads read each word's first sub-token. A tokenizer whose tokens
for the words differ from its tokens for the whole text (BPE, SentencePiece) gets a second pass: the
sequence heads then read the whole text, as training did. Batches are padded on the right, as in training.
"""

from __future__ import annotations

import numbers
import os
import pickle
import threading
import warnings
import weakref
from collections.abc import Iterable, Mapping, Set

import numpy as np
import regex
import torch
from transformers import AutoTokenizer, PreTrainedConfig

from . import families
from . import precision as precision_policy
from .encoders import (custom_code_problem, is_local_path, pickle_refusal, tokenizer_problem, url_problem,
                       vocabulary_problem)
from .folders import check_model_folder, check_multitask_config, is_onnx_folder, refuse_run_folder
from .errors import first_line, outside_mtnlp
from .modeling import NO_TASKS, ConfigMismatch, MultiTaskModel, TasksError, evaluating, to_device
from .tasks import task_type
from .tasks.base import (LONE_SURROGATE, PAIR_CUT, SHOWN, answering_tasks, input_forms, is_words_input,
                         text_input_problem, truncating, valid_unicode)
from .tasks.tagging import first_subtokens


# A fast tokenizer keeps its truncation and padding as state that every call sets: calls from two threads at once
# would encode with each other's (texts left uncut past max_length). So calls that share a tokenizer take turns:
# one pipeline's from several threads, a shallow copy's, two pipelines built on one tokenizer. Kept beside the
# tokenizer, not in the pipeline, a lock is no state to copy (copy.deepcopy, pickle: Spark and Ray closures).
TOKENIZER_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
CALL_ARGUMENTS = ("tasks", "return_all_scores", "strict")  # __call__'s, not from_pretrained's


class MultiTaskPipeline:
    """Every head's prediction for raw inputs: `MultiTaskPipeline.from_pretrained(MODEL)(texts)`, with
    MODEL a trained model folder, an ONNX export or a hub id; see __call__ for inputs and outputs.

    `device`: default the model's own if it is on a GPU, else the machine's accelerator (CUDA, MPS, XPU) when
    there is one (ONNX: the CPU); a model given here is moved there in place (as transformers' pipelines do).
    Each call runs it in eval mode and leaves it in its own mode: a pipeline built in the middle of training
    does not turn dropout off.
    `precision`: auto (bf16 where the hardware runs it natively, else fp32; see precision.py), bf16, fp16,
    fp32 or no (= fp32), in any case, as a recipe's training.mixed_precision and --precision take them.
    `batch_size`: sequences per encoder pass (an input, or each (context, choice) pair of a multiple-choice
    input). `max_length`: tokens per text, default the length the model was trained with."""

    def __init__(self, model: MultiTaskModel, tokenizer, device: str | int | torch.device | None = None,
                 precision: str = "auto", batch_size: int = 32, max_length: int | None = None):
        onnx = hasattr(model, "session")  # an OnnxMultiTaskModel: onnxruntime on the CPU, in fp32
        if not (onnx or isinstance(getattr(model, "_orig_mod", model), MultiTaskModel)):  # (torch.compile's wrapper too)
            raise TypeError(f"model: expected a MultiTaskModel, got {type(model).__name__}"
                            + (" (MultiTaskPipeline.from_pretrained loads a folder or hub id)"
                               if isinstance(model, (str, os.PathLike)) else ""))
        if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
            raise TypeError(f"tokenizer: expected a tokenizer (AutoTokenizer.from_pretrained(...)), got "
                            f"{type(tokenizer).__name__}")
        if device is None:
            device = torch.device("cpu") if onnx else next(model.parameters()).device  # on a GPU: stays (cuda:1 too)
            if device.type == "cpu" and not onnx:
                device = default_device()
        self.device = checked_device(device)
        if not is_integer(batch_size) or batch_size < 1:  # (checked here: 2.5 would fail at the first call)
            raise ValueError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
        if max_length is not None and (not is_integer(max_length) or max_length < 8):  # a recipe's minimum too
            raise ValueError(f"max_length must be an integer of at least 8, got {max_length!r}")
        # (as from_pretrained checks them: an id past the embeddings would be an IndexError at the first call)
        if problem := tokenizer_problem(tokenizer) or vocabulary_problem(tokenizer, model.config.encoder):
            raise ValueError(problem)
        self.model = model.to(self.device)  # (in place; each call runs it in eval mode, then restores its mode)
        self.tokenizer = tokenizer
        self.precision = (precision_policy.for_onnx(precision, model.quantize) if onnx else
                          precision_policy.for_model(precision, self.model))
        if self.precision.warning:
            warnings.warn(self.precision.warning, stacklevel=outside_mtnlp())
        self.batch_size = int(batch_size)
        trained = (model.config.mtnlp or {}).get("max_length")
        self.max_length = int(max_length or trained or min(tokenizer.model_max_length, 512))
        positions = families.max_tokens(model.config.encoder)  # e.g. RoBERTa: max_position_embeddings - 2
        if positions is not None and self.max_length > positions:
            if max_length is not None:
                warnings.warn(f"max_length {max_length}: the encoder's position embeddings hold {positions} tokens; "
                              f"texts are cut at {positions}", stacklevel=outside_mtnlp())
            self.max_length = positions

    @property
    def _lock(self) -> threading.Lock:
        """The lock of this pipeline's tokenizer, which its calls hold (see TOKENIZER_LOCKS)."""
        return TOKENIZER_LOCKS.setdefault(self.tokenizer, threading.Lock())  # (one dict operation: atomic)

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device=None, precision: str = "auto", batch_size: int = 32,
                        max_length: int | None = None, **hub_kwargs) -> "MultiTaskPipeline":
        """Load a saved model folder, an ONNX folder (`mtnlp export --onnx`) or a hub id (hub_kwargs:
        revision, token, ...)."""
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise TypeError(f"name_or_path: expected a model folder or hub id, got {type(name_or_path).__name__}"
                            + (" (a model object: MultiTaskPipeline(model, tokenizer))"
                               if isinstance(name_or_path, torch.nn.Module) else ""))
        if called := [key for key in hub_kwargs if key in CALL_ARGUMENTS]:  # else taken for config.json's keys
            raise TypeError(f"from_pretrained() got an unexpected keyword argument {called[0]!r}: each call takes it, "
                            f"pipe(inputs, {called[0]}=...)")
        precision_policy.precision_name(precision)  # a misspelt precision before a download, not after
        model, tokenizer = load_pretrained(name_or_path, **hub_kwargs)
        return cls(model, tokenizer, device=device, precision=precision, batch_size=batch_size, max_length=max_length)

    @property
    def tasks(self) -> dict[str, dict]:
        return self.model.config.tasks

    def __call__(self, inputs, tasks: list[str] | None = None, return_all_scores: bool = False,
                 strict: bool | None = None):
        """`inputs`: a text, a pair {"text": ..., "text_pair": ...}, an input of a task type with its own
        fields (TaskType.input_fields), or a list of those. For one input, {task: prediction}; for a
        list, a list of those, in order. Text heads answer texts and pairs from one encoder pass per batch,
        each head the form it was trained on (a pair or a single text); a type with its own inputs answers
        those. `tasks`: the heads to ask (default: all); with `strict` (default: when `tasks` is given),
        each must read every input, else every head asked that reads an input answers it
        (tasks.base.answering_tasks). serve checks each request so, then asks for their union, not strict."""
        single = isinstance(inputs, (str, dict))
        if not single and not isinstance(inputs, Iterable) and hasattr(inputs, "__len__") \
                and hasattr(inputs, "__getitem__"):  # a torch Dataset (transformers' KeyDataset): indexed, not iterable
            inputs = [inputs[i] for i in range(len(inputs))]
        # any sequence of them: a list, a generator, a datasets column, a pandas Series, a numpy array (not a set:
        # the answers are in the inputs' order)
        if not single and (not isinstance(inputs, Iterable) or isinstance(inputs, (Mapping, Set, bytes))
                           or getattr(inputs, "ndim", 1) != 1):  # a DataFrame would give its column names
            raise TypeError(f"inputs: expected a text, a dict or a list of those, got {type(inputs).__name__}")
        values = [inputs] if single else list(inputs)
        for name, flag in (("return_all_scores", return_all_scores), ("strict", strict)):
            if not isinstance(flag, (bool, np.bool_)) and not (name == "strict" and flag is None):  # "no": True
                raise TypeError(f"{name}: expected True or False, got {flag!r}")
        strict = tasks is not None if strict is None else strict
        if tasks is not None and not isinstance(tasks, str):
            if isinstance(tasks, Iterable) and not isinstance(tasks, Mapping):
                tasks = list(tasks)  # (a generator is read once)
            if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
                raise TypeError(f"tasks: expected a task name or a list of names, got {tasks!r}")
        tasks = [tasks] if isinstance(tasks, str) else list(self.tasks if tasks is None else tasks)
        if not tasks:  # as `--tasks ""` is refused: an empty list asks for no head
            raise ValueError(f"tasks: {NO_TASKS}")
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"tasks: the model has no task {unknown[0]!r} (it has: {', '.join(self.tasks)})")
        kinds = {t: task_type(self.tasks[t]["type"]) for t in tasks}
        results: list[dict] = [{} for _ in values]
        own = {t: [] for t in tasks if kinds[t].input_fields}  # own: task -> indices of its inputs
        texts: dict[tuple, dict] = {}  # the text heads that read them -> {index: (text, pair or None)}
        forms = input_forms({t: kinds[t] for t in own})
        specs = {t: self.tasks[t] for t in tasks}
        for i, value in enumerate(values):
            try:
                takers = answering_tasks(value, specs, every=strict)  # a type with its own inputs checks them
            except ValueError as e:
                raise ValueError(f"inputs[{i}]: {e}") from None
            if takers[0] in own:
                for t in takers:
                    own[t].append(i)
                continue
            if not valid_unicode(value):
                raise ValueError(f"inputs[{i}]: {LONE_SURROGATE}")
            problem = text_input_problem(value)
            if problem:
                raise ValueError(f"inputs[{i}]{problem[0]}: {problem[1]}{f' (the other heads read {forms})' if forms else ''}")
            texts.setdefault(tuple(takers), {})[i] = (value, None) if isinstance(value, str) \
                else (value["words"], None) if is_words_input(value) else (value["text"], value.get("text_pair"))
        truncated = []  # (input index, the heads that read it, whether it is a pair)
        with self._lock, evaluating(self.model):
            for heads, items in texts.items():  # e.g. the single-text heads' texts, and the pair heads' pairs
                cut = self._text_heads(items, list(heads), return_all_scores, results)
                truncated += [(i, heads, items[i][1] is not None) for i in cut]
            for t, idx in own.items():
                if not idx:
                    continue
                predictions, cut = kinds[t].pipeline(self, t, [values[i] for i in idx], return_all_scores)
                for i, prediction in zip(idx, predictions):
                    results[i][t] = prediction
                truncated += [(idx[k], (t,), False) for k in cut]
        if truncated:
            warnings.warn(truncation_warning(truncated, self.tasks, self.max_length), stacklevel=2)
        return results[0] if single else results

    def _text_heads(self, items: dict[int, tuple[str | list[str], str | None]], tasks: list[str], all_scores: bool,
                    results: list[dict]) -> list[int]:
        """Every text head's prediction for texts and pairs, or the tagging heads' for texts split into words
        (a list of words, not a text: `tasks` are then tagging heads only); returns the inputs that were
        truncated. Sequence heads read the texts tokenised as training read them (whole texts), tagging
        heads their words (as training read a corpus's words); where both give the same tokens (WordPiece:
        BERT), one encoder pass per batch serves all heads."""
        token_heads = [t for t in tasks if task_type(self.tasks[t]["type"]).head_kind == "token"]
        text_heads = [t for t in tasks if t not in token_heads]
        # given words stripped, as training's readers strip a corpus's tokens (BPE tokenises a space: 'Ġ'); echoed as given
        words = {i: ([(word.strip(), None) for word in text] if isinstance(text, list) else split_words(text),
                     None if pair is None else split_words(pair)) for i, (text, pair) in items.items()} if token_heads else {}

        def size(i: int) -> int:
            return len(words[i][0]) + len(words[i][1] or ()) if token_heads else len(items[i][0]) + len(items[i][1] or "")

        # pairs and single texts in separate batches; similar lengths share a batch
        order = sorted(items, key=lambda i: (items[i][1] is not None, -size(i)))
        truncated = []
        start = 0
        while start < len(order):
            pairs = items[order[start]][1] is not None
            idx = [i for i in order[start:start + self.batch_size] if (items[i][1] is not None) == pairs]
            start += len(idx)
            by_words = by_text = None
            if token_heads:
                by_words = self._encode([[w for w, _ in words[i][0]] for i in idx],
                                        [[w for w, _ in words[i][1]] for i in idx] if pairs else None, True)
            if text_heads:  # stripped, as training's readers strip texts (BPE tokenises a trailing space: 'Ġ')
                by_text = self._encode([items[i][0].strip() for i in idx],
                                       [items[i][1].strip() for i in idx] if pairs else None, False)
            if by_words is not None and by_text is not None and same_tokens(by_words, by_text):
                passes = [(by_words, tasks)]  # WordPiece (BERT): one encoder pass serves every head
            else:  # BPE, SentencePiece: the words' tokens differ from the text's
                passes = [(enc, heads) for enc, heads in ((by_text, text_heads), (by_words, token_heads)) if heads]
            logits = {}
            for enc, heads in passes:
                logits.update(self._logits(enc, heads))
            for j, i in enumerate(idx):
                # a word with no token (cut off, or one the tokenizer removes: a zero-width space) gets no tag
                firsts = first_subtokens(by_words.word_ids(j), by_words.sequence_ids(j)) if by_words is not None else []
                if any(enc.encodings[j].overflowing for enc, _ in passes):
                    truncated.append(i)
                if isinstance(items[i][0], list):  # given words: a tag for each
                    results[i].update({t: task_type(self.tasks[t]["type"]).decode_words(
                        logits[t][j], self.tasks[t], items[i][0], firsts) for t in tasks})
                    continue
                tagged = [words[i][0][w] for _, w in firsts]
                results[i].update({t: task_type(self.tasks[t]["type"]).decode(
                    logits[t][j], self.tasks[t], all_scores, tagged, [p for p, _ in firsts], items[i][0])
                    for t in tasks})
        return truncated

    def _encode(self, texts: list, pairs: list | None, split_into_words: bool):
        return truncating(self.tokenizer, texts, pairs, max_length=self.max_length, words=split_into_words, padding=True,
                          padding_side="right", return_tensors="pt",
                          **({} if self.model.uses_token_type_ids else {"return_token_type_ids": False}))

    def _logits(self, enc, tasks: list[str]) -> dict[str, np.ndarray]:
        inputs = to_device(dict(enc), self.device)
        with torch.no_grad(), self.precision.autocast():
            logits = self.model.forward_heads(inputs["input_ids"], inputs["attention_mask"],
                                              inputs.get("token_type_ids"), tasks=tasks)
        return {t: v.float().cpu().numpy() for t, v in logits.items()}  # one copy per head and batch


def is_integer(value) -> bool:
    """An int (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def default_device(cpu: bool = False) -> torch.device:
    """The machine's accelerator (CUDA, MPS, XPU), as Accelerate picks for training, else (or with `cpu`) the CPU."""
    # is_available first: current_accelerator() names what torch is built for (PyPI's Linux wheel: CUDA, GPU or not);
    # torch 2.6 has no check_available
    found = None if cpu or not torch.accelerator.is_available() else torch.accelerator.current_accelerator()
    return torch.device(found.type) if found is not None else torch.device("cpu")


def checked_device(device) -> torch.device:
    """`device` as a torch.device, or a ValueError naming it: a name torch does not know, or a CUDA device this
    machine does not have (no silent fallback to the CPU: a run meant for a GPU would be slow unnoticed)."""
    try:
        if is_integer(device):  # transformers' pipelines: -1 is the CPU
            resolved = torch.device("cpu" if device < 0 else f"cuda:{device}")
        else:
            resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r}: {first_line(e)} (e.g. 'cpu', 'cuda', 'cuda:1' or -1 for the CPU)") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise ValueError(f"device {device!r}: this machine has no CUDA device; use 'cpu' (or -1)")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return resolved


def same_tokens(a, b) -> bool:
    """Whether two padded encodings hold the same tensors."""
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def split_words(text: str) -> list[tuple[str, tuple[int, int]]]:
    """A text's words with their character offsets, split as the NER and POS corpora tagging heads are
    trained on (CoNLL-2003, UD English: Penn Treebank conventions): at spaces and punctuation, but
    abbreviations (U.S., Dr., Inc.), numbers (1,000, 3.5, 12:30) and hyphenated words (Baden-Wuerttemberg)
    stay whole, and clitics are words of their own (does n't, Merkel 's); invisible and control characters between
    words (right-to-left marks, zero-width spaces, \x1c, DEL) are no word, as spaces. A head then tags "U.S." as the
    one word it saw in training, not as U / . / S / . Not the model tokenizer's own pre-tokenizer: a
    byte-level BPE one gives byte-encoded words ('ĠLee'), a SentencePiece one '▁Paris.'."""
    return [(m.group(), m.span()) for m in _WORDS.finditer(text) if SHOWN.search(m.group())]


# a word's characters: letters (with combining marks), digits, and the invisible joiners a tokenizer drops
# (soft hyphen in co\u00adoperate, zero-width non-joiner in Persian words)
_LETTER = r"[\p{L}\p{N}\p{M}_\u00ad\u200c\u200d]"
_CLITIC = r"(?i:s|re|ve|ll|d|m)"
_HYPHEN = r"[-\u2010\u2011]"  # ASCII, Unicode and non-breaking hyphens
_WORDS = regex.compile(rf"""
      (?:https?://|www\.)(?:\S*[^\s.,;:!?)\]"'’]|\S)(?=[.,;:!?)\]"'’]*(?:\s|$))  # URLs and e-mail addresses:
    | (?<![\w.+-])(?<!\w['’])[\w.+-]+(?:['’][\w.+-]+)*@\w[\w-]*(?:\.\w[\w-]*)+  # one word each, as UD English
    | (?:\p{{L}}\.){{2,}}(?:{_HYPHEN}{_LETTER}+)*                     # U.S.  D.C.  i.e.  U.S.-led
    | \p{{Lu}}\p{{Ll}}?\.(?:\p{{Lu}}\p{{Ll}}?\.)+                           # Ph.D.
    | \b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Inc|Ltd|Co|Corp|vs|etc|Gen|Gov|Sen|Rep|Mt|Jan|Feb|Mar|Apr|Aug|Sept?|Oct|Nov|Dec)\.
    | \p{{Lu}}\.(?=\s+\p{{Lu}})                                     # an initial: George W. Bush
    | (?=[\p{{L}}\p{{N}}.]{{0,32}}\p{{N}})\p{{L}}[\p{{L}}\p{{N}}]*(?:\.[\p{{L}}\p{{N}}]+)+  # v5.3  No.2  W167.5  (13.9 | m)
    | \p{{N}}+(?:[.,:/-]\p{{N}}+)+                                  # 1,000  3.5  12:30  713-853-3989
    | (?<![\p{{L}}\p{{N}}.])[.+]\p{{N}}+(?:[.,:/-]\p{{N}}+)*              # .500  +44  +0.05
    | (?<!\p{{L}})\p{{Lu}}{{1,2}}\$                                     # US$  HK$  C$
    | (?<!\p{{L}})\p{{Lu}}{{1,4}}&\p{{Lu}}{{1,4}}(?!\p{{L}})                    # S&P  AT&T  PG&E
    | {_LETTER}+(?=(?i:n['’]t)\b)                                # does | n't,  ca | n't,  CA | N'T
    | (?i:n['’]t)\b
    | ['’]\p{{N}}{{2}}s?\b                                           # '90s
    | ['’]{_CLITIC}\b                                           # Merkel | 's,  you | 're
    | {_LETTER}+(?:{_HYPHEN}{_LETTER}+)*(?:['’](?!{_CLITIC}\b|(?i:t)\b){_LETTER}+(?:{_HYPHEN}{_LETTER}+)*)*  # O'Neill
    | \.{{2,}}|-{{2,}}|[!?]{{2,}}|\*{{2,}}|={{2,}}                        # ..  ....  ---  !!  ?!  **
    | (?!\s)\X                                                   # any other character (a whole grapheme: 👩🏽‍💻, 🇫🇷)
""", regex.VERBOSE)


def load_pretrained(name: str, **hub_kwargs):
    """(MultiTaskModel or OnnxMultiTaskModel, tokenizer) from a model folder, an ONNX folder or a hub id;
    a one-line UserError when it is not one or cannot be read."""
    from pathlib import Path

    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError
    from safetensors import SafetensorError
    from .errors import NotFound, UserError, causes, first_line, offline_miss
    from .hub import transport_errors
    from .onnx_model import OnnxMultiTaskModel, onnx_errors

    name = str(name)
    path = Path(name).expanduser()
    if not path.exists() and is_local_path(name):  # no hub look-up, no retries
        raise NotFound(f"{name}: {url_problem(name) or 'model folder not found'}")
    refuse_run_folder(name)
    if hub_kwargs.get("revision") == "":
        raise UserError("revision: empty; leave it out for the default branch (main)")
    if path.exists() and hub_kwargs.get("revision"):  # a folder has one version: the revision would be ignored
        raise UserError(f"revision {hub_kwargs['revision']!r}: {name} is a local folder; a revision is for a hub id")
    onnx = is_onnx_folder(name)  # `mtnlp export --onnx` output
    if onnx and (unread := [key for key in hub_kwargs if key != "revision"]):  # (a folder: revision is said below)
        raise TypeError(f"from_pretrained() got an unexpected keyword argument {unread[0]!r} (for an ONNX folder)")
    if path.exists() and not onnx:  # a file, a checkpoint, a folder a killed run left without weights: named
        check_model_folder(path)
    loading = "model"
    try:
        config = PreTrainedConfig.get_config_dict(name, **({} if onnx else hub_kwargs))[0]
        if not config and not path.exists():  # the repository has no config.json there
            raise UserError(f"{name}: no config.json at revision {hub_kwargs.get('revision') or 'main'}"
                            + ("" if hub_kwargs.get("revision") else " (a model pushed to a branch: give its revision)"))
        check_multitask_config(name, config)
        if not onnx and ((config.get("mtnlp") or {}).get("onnx")):  # an export uploaded as plain files (a local
            # folder without its model.onnx: check_model_folder said so)
            raise UserError(f"{name}: an ONNX export, which loads from a folder only: download it "
                            f"(hf download {name} --local-dir DIR) and give DIR")
        model = OnnxMultiTaskModel(name) if onnx else MultiTaskModel.from_pretrained(name, **hub_kwargs)
        loading = "tokenizer"
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False, **({} if onnx else hub_kwargs))
        if problem := tokenizer_problem(tokenizer) or vocabulary_problem(tokenizer, model.config.encoder):
            raise UserError(f"{name}: {problem}")
        return model, tokenizer
    except (OSError, ValueError) as e:
        if custom := custom_code_problem(name, e):
            raise UserError(f"{name}: {custom}") from None
        if isinstance(e, ConfigMismatch) and str(e).startswith(f"{name}: "):
            raise UserError(first_line(e)) from None
        if isinstance(e, TasksError):  # a config.json edited by hand: a task without labels, ...
            raise UserError(f"{name}: its config.json does not describe an mtnlp model that loads ({first_line(e)})") \
                from None
        if not path.exists() and any(isinstance(c, LocalEntryNotFoundError) for c in causes(e)):
            if offline := offline_miss(e):
                raise NotFound(f"{name}: {offline}") from None
            raise NotFound(f"{name}: cannot reach the hub to download it ({first_line(list(causes(e))[-1])})") from None
        if not path.exists():
            hub_error = hub_load_error(name, e, hub_kwargs.get("revision"))
            if hub_error:
                raise hub_error from None
        if loading == "model" and not path.exists() and "does not appear to have a file named" in str(e):
            where = ("in the local hub cache, and HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE
                     else f"at revision {hub_kwargs.get('revision') or 'main'}")
            raise UserError(f"{name}: no weights (model.safetensors) {where}") from None
        if loading == "tokenizer":  # e.g. pushed with MultiTaskModel.push_to_hub, which pushes no tokenizer
            raise UserError(f"{name}: no tokenizer that loads ({first_line(e)}): a model folder keeps the tokenizer "
                            "it was trained with (tokenizer.json, tokenizer_config.json; `mtnlp push` uploads them)") from None
        raise UserError(f"{name}: not an mtnlp model folder or hub repository ({first_line(e)})") from None
    except (SafetensorError, *onnx_errors()) as e:  # a damaged or cut-off weights file
        cached = "" if path.exists() else ": the copy in the local hub cache is damaged (a full disk?): `hf cache " \
            "delete` it (or remove it under HF_HOME) to download it again"
        raise UserError(f"{name}: cannot read its weights ({first_line(e)}){cached}") from None
    except transport_errors() as e:  # the connection lost during a download (before one, transformers says OSError)
        raise NotFound(f"{name}: cannot reach the hub to download it ({first_line(e)}); a later call goes on with "
                       "what was downloaded") from None
    except pickle.UnpicklingError as e:  # pickled weights (a hub repository's) holding more than tensors
        raise UserError(f"{name}: {pickle_refusal(e)}") from None
    except RecursionError:  # a JSON file nested too deeply for Python's json module
        raise UserError(f"{name}: its {'config.json' if loading == 'model' else 'tokenizer.json'} nests too deeply "
                        "to read (arrays or objects inside each other)") from None
    except (KeyError, TypeError, AttributeError) as e:  # a config.json edited by hand: a task without labels, ...
        if loading == "tokenizer":  # a damaged tokenizer.json (KeyError: 'added_tokens')
            raise UserError(f"{name}: its tokenizer does not load (a damaged tokenizer.json? {type(e).__name__}: "
                            f"{first_line(e)})") from None
        if loading != "model":
            raise
        unexpected = regex.search(r"unexpected keyword argument '(\w+)'", str(e))
        if unexpected and unexpected[1] in hub_kwargs:  # passed on to the model's __init__
            raise TypeError(f"from_pretrained() got an unexpected keyword argument {unexpected[1]!r}") from None
        raise UserError(f"{name}: its config.json does not describe an mtnlp model that loads "
                        f"({type(e).__name__}: {first_line(e)})") from None


def hub_load_error(name: str, error: Exception, revision: str | None):
    """A UserError for a hub id that could not be loaded because of the repository or the token, else None."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    from .errors import NoRevision, NotFound, UserError, causes

    found = list(causes(error))
    if any(isinstance(c, RevisionNotFoundError) for c in found):
        return NoRevision(f"{name}: the repository has no revision '{revision}'")
    if any(isinstance(c, RepositoryNotFoundError) for c in found):  # also a gated one, or one the token may not read
        why = "or the token may not read it" if get_token() else "a private one needs a token: HF_TOKEN or `hf auth login`"
        return NotFound(f"{name}: no such model repository on {constants.ENDPOINT} ({why})")
    refused = [c for c in found if isinstance(c, HfHubHTTPError) and c.response is not None
               and c.response.status_code in (401, 403)]
    if refused:
        return UserError(f"{name}: the hub refused the token (HTTP {refused[0].response.status_code}): check HF_TOKEN")
    return None


class TruncationWarning(UserWarning):
    """Inputs longer than max_length were cut: `indices` (the inputs'), and what that did to the heads."""

    def __init__(self, indices: list[int], max_length: int, effects: list[str]):
        self.indices, self.max_length, self.effects = indices, max_length, effects
        super().__init__(self.naming([f"inputs[{i}]" for i in indices]))

    def naming(self, names: list[str]) -> str:
        """The warning, naming the inputs as the caller knows them (mtnlp predict: by file line)."""
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        return (f"{len(names)} input(s) longer than max_length={self.max_length} tokens were truncated ({shown}): "
                + "; ".join(self.effects))


def truncations(call) -> tuple:
    """(what `call` returns, the TruncationWarnings it raised), recorded instead of shown, for a caller that
    names the cut inputs its own way (mtnlp predict: by file line; serve: per request); other warnings
    go on as they were. Warnings are process-wide: only one thread may be in a pipeline call meanwhile."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        result = call()
    cut = []
    for w in caught:
        if isinstance(w.message, TruncationWarning):
            cut.append(w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result, cut


def truncation_warning(truncated: list[tuple[int, tuple, bool]], specs: dict, max_length: int) -> TruncationWarning:
    """One warning for a call's truncated inputs ((index, the heads that read it, whether a pair)): which
    inputs, and what that does to the heads that read them."""
    kinds = {task_type(specs[t]["type"]) for _, heads, _ in truncated for t in heads}
    pairs = f" ({PAIR_CUT})" if any(pair for *_, pair in truncated) else ""
    effects = ([f"sequence heads read only what fits{pairs}"] * any(k.head_kind != "token" and not k.input_fields
                                                                     for k in kinds)
               + ["the words it cuts off get no tags"] * any(k.head_kind == "token" for k in kinds)
               + sorted(k.cut_effect for k in kinds if k.input_fields))
    return TruncationWarning(sorted({i for i, *_ in truncated}), max_length, effects)
