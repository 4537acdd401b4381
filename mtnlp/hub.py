"""Sharing on a Hugging Face hub: a generated model card and a one-commit push of a model folder.

huggingface_hub does the talking (HF_ENDPOINT and HF_TOKEN are respected). A push uploads the
folder as it is (safetensors weights, config with the task registry, tokenizer, README.md model
card, curves.png) in ONE commit; unchanged files are skipped, so pushing twice is a no-op.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, ModelCardData, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalTokenNotFoundError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id

from .encoders import HUB_PAGE, is_local_path
from .errors import UserError, first_line
from .folders import check_model_folder, in_task_order


CARD_PLACEHOLDER = "REPO_OR_DIR"  # where the card's usage lines name the model; push puts the repo id there


def model_card(config, metrics: dict | None = None, datasets: list[str] | None = None, onnx: bool = False) -> str:
    """README.md text: YAML metadata and a per-task table of labels and metrics (`onnx`: of an ONNX export,
    which `mtnlp export --task` does not read)."""
    from .tasks import task_type
    from .tasks.base import example_input
    from .tasks.tagging import iobes_grouping_note

    base_model = hub_id((config.mtnlp or {}).get("base_model"))
    tags = {task_type(spec["type"]).pipeline_tag for spec in config.tasks.values()}
    data = ModelCardData(
        library_name="mtnlp",
        base_model=base_model,
        datasets=[name for name in datasets or [] if hub_id(name)] or None,  # not a local data set folder
        pipeline_tag="text-classification" if "text-classification" in tags else sorted(tags)[0],
        tags=["mtnlp", "multi-task"] + sorted(tags),
    )
    lines = [
        "---", data.to_yaml(), "---", "",
        f"# Multi-task model: {', '.join(config.tasks)}", "",
        f"One shared {config.encoder.model_type} encoder" + encoder_note(base_model, getattr(config, "sharing", None))
        + f" with {len(config.tasks)} task head{'s' * (len(config.tasks) != 1)}, trained with "
        "[mtnlp](https://pypi.org/project/mtnlp/)" + version_note(config) + transfer_note(config) + ".", "",
        "| task | type | labels | validation | test |", "|---|---|---|---|---|",
    ]
    for name, spec in config.tasks.items():
        scores = (metrics or {}).get("tasks", {}).get(name, {})
        labels = task_type(spec["type"]).describe_labels(spec)
        cells = [", ".join(f"{k} {v:.4f}" if v is not None else f"{k} —" for k, v in scores.get(split, {}).items())
                 or "—" for split in ("validation", "test")]
        lines.append("| " + " | ".join(map(table_cell, [name, spec["type"], labels, *cells])) + " |")
    lines += metric_notes(config, metrics)
    tuned = [name for name, spec in config.tasks.items()
             if spec.get("thresholds") and (metrics or {}).get("tasks", {}).get(name, {}).get("validation")]
    if tuned:  # the figures of the split the thresholds were chosen on are not a held-out estimate
        lines += ["", f"The per-label thresholds of {', '.join(tuned)} were tuned on the validation split: its "
                  "validation figures are measured on the split they were chosen on, so they run high; test figures "
                  "are held out."]
    lines += ["", "## Use", "", "```python", "from mtnlp import MultiTaskPipeline", "",
              f'pipe = MultiTaskPipeline.from_pretrained("{CARD_PLACEHOLDER}")']
    lora = (getattr(config, "sharing", None) or {}).get("type") == "lora"  # each task reads its own adapted encoder
    readers: dict[str, list[str]] = {}  # an input of each form the heads read (tasks.base.example_input)
    for name, spec in config.tasks.items():
        readers.setdefault(json.dumps(example_input(spec)), []).append(name)
    for example, names in readers.items():
        lines.append(f"pipe({example})   # " + (f"the {names[0]} head" if len(names) == 1 else
                                               f"the {', '.join(names)} heads, from one encoder pass" + (
                                                   " per task" if lora else "")))
    lines += ["```", ""]
    tagging = [name for name, spec in config.tasks.items() if task_type(spec["type"]).head_kind == "token"]
    if tagging and not onnx:
        lines += [f"A tagging head exported as a plain transformers model (`mtnlp export {CARD_PLACEHOLDER} --task "
                  f"{tagging[0]} {tagging[0]}-model`) needs word-level aggregation `first`:", "",
                  "```python", "from transformers import pipeline", "",
                  f'tagger = pipeline("token-classification", model="{tagging[0]}-model", '
                  'aggregation_strategy="first")',
                  'tagger("Some text to analyse.")   # whole words, split at every punctuation mark', "```", "",
                  "Not `simple`: mtnlp trains only each word's first sub-token, so `simple` reads untrained tags "
                  'on the other word pieces and returns fragments such as "##cast".', ""]
        lines += [f"The {name} head: {note}.\n" for name in tagging
                  if (note := iobes_grouping_note(config.tasks[name]["labels"]))]
    multilabel = [name for name, spec in config.tasks.items() if spec["type"] == "multilabel"]
    if multilabel and not onnx:
        lines += [f"A multi-label head exported as a plain transformers model (`mtnlp export {CARD_PLACEHOLDER} "
                  f"--task {multilabel[0]} {multilabel[0]}-model`) gives its top label alone unless called with "
                  f'`top_k=None`: `pipeline("text-classification", model="{multilabel[0]}-model", top_k=None)` gives '
                  "every label's sigmoid score; keep those above their threshold (its config.json's `thresholds`).", ""]
    if (metrics or {}).get("best_step") is not None:
        steps = metrics.get("steps") or {}
        trained = f" of {steps['trained']} trained" if steps else ""
        if steps and steps["trained"] < steps["planned"]:
            trained += f" (early stopping; {steps['planned']} planned)"
        lines += [f"Kept model: step {metrics['best_step']}{trained}.", ""]
    used = (metrics or {}).get("precision")  # bf16 and fp32 figures can differ in the last digits
    if used and (metrics or {}).get("tasks"):
        lines += [f"Figures measured in {used['used']} ({used['reason']}).", ""]
    if not onnx:  # an export's figures are measured on its own folder (mtnlp evaluate --per-label)
        lines += per_label_section((metrics or {}).get("per_label") or {})
    return "\n".join(lines)


def metric_notes(config, metrics: dict | None) -> list[str]:
    """Lines under the card's table: how the figures shown are computed where their names do not say (each
    task type's metric_notes), e.g. classification's f1 is macro-averaged."""
    from .tasks import task_type

    notes: dict[str, dict[str, dict]] = {}  # note -> {"metrics": {...}, "tasks": {...}} (dicts: ordered sets)
    for name, spec in config.tasks.items():
        shown = {k for split in ("validation", "test") for k in (metrics or {}).get("tasks", {}).get(name, {}).get(split, {})}
        for metric, note in task_type(spec["type"]).metric_notes.items():
            if metric in shown:
                said = notes.setdefault(note, {"metrics": {}, "tasks": {}})
                said["metrics"][metric] = said["tasks"][name] = None
    return [""] + [f"- {', '.join(said['metrics'])} ({', '.join(said['tasks'])}): {note}"
                   for note, said in notes.items()] if notes else []


def per_label_section(per_label: dict[str, dict[str, dict]]) -> list[str]:
    """Lines of a folded table of each label's precision / recall / F1 (support) per split, from metrics.json's
    per_label; none when it has none."""
    if not per_label:
        return []
    lines = ["<details>", "<summary>Per-label precision / recall / F1 (support)</summary>", "",
             "| task | label | validation | test |", "|---|---|---|---|"]
    for task, splits in per_label.items():
        for label in dict.fromkeys(label for figures in splits.values() for label in figures):
            cells = [label_cell(splits.get(split, {}).get(label)) for split in ("validation", "test")]
            lines.append("| " + " | ".join(map(table_cell, [task, label, *cells])) + " |")
    return lines + ["", "</details>", ""]


def label_cell(figures: dict | None) -> str:
    if figures is None:
        return "—"
    threshold = f"; threshold {figures['threshold']:g}" if figures.get("threshold") is not None else ""
    return (f"{figures['precision']:.4f} / {figures['recall']:.4f} / {figures['f1']:.4f} "
            f"({figures['support']:,}{threshold})")


def encoder_note(base_model: str | None, sharing: dict | None) -> str:
    """' (from `x`; per-task LoRA adapters, r 8)': where the encoder comes from, and how a soft-shared one is
    shared (mtl.sharing)."""
    kind = (sharing or {}).get("type")
    notes = [f"from `{base_model}`"] * bool(base_model) + (
        [f"per-task LoRA adapters, r {sharing.get('r')}"] if kind == "lora"
        else [f"its top {sharing.get('layers')} layers per task"] if kind == "task_layers" else [])
    return f" ({'; '.join(notes)})" if notes else ""


def version_note(config) -> str:
    version = (config.mtnlp or {}).get("version")
    return f" {version}" if version else ""  # models saved before mtnlp recorded it


def transfer_note(config) -> str:
    """', after multi-task training on a, b (`id`, the encoder of task a)' for a model fine-tuned from a trained
    one (model.init_from); the task is named when the source had one encoder per task (soft sharing)."""
    source = (config.mtnlp or {}).get("init_from")
    if not source:
        return ""
    at = f" at {source['revision'][:12]}" if source.get("revision") else ""
    notes = ([f"`{hub_id(source['model'])}`{at}"] if hub_id(source["model"]) else []) \
        + ([f"the encoder of task {source['encoder_of']}"] if source.get("encoder_of") else [])
    where = f" ({', '.join(notes)})" if notes else ""
    return f", after multi-task training on {', '.join(source['tasks'])}{where}"


def hub_id(name: str | None) -> str | None:
    """`name` if it can be a hub model id, else None: the encoder a recipe gave may be a local path, which a
    card must not show (and the hub refuses as base_model)."""
    if not name or is_local_path(name) or repo_id_problem(name):
        return None
    return name


def loaded_commit(repo_id: str, revision: str | None = None) -> str | None:
    """The commit whose files loading `repo_id` at `revision` gave (the hub cache names its snapshot folders by
    commit), or None if it cannot be told."""
    try:
        return Path(hf_hub_download(repo_id, "config.json", revision=revision)).parent.name
    except Exception:  # only a record: training goes on without it
        return None


def read_card(model: str, revision: str | None = None) -> str | None:
    """The model card (README.md) of a model folder or hub id, or None when it has none or it cannot be read."""
    path = Path(model).expanduser() / "README.md"
    try:
        if not Path(model).expanduser().is_dir():
            path = Path(hf_hub_download(model, "README.md", revision=revision))
        return path.read_text(encoding="utf-8")
    except Exception:  # no card: a card is optional
        return None


def table_cell(text: str) -> str:
    """Text as one cell of a markdown table: a label may hold a `|` or a line break."""
    return " ".join(text.replace("|", "\\|").split())


def card_rows(lines: list[str], columns: tuple[str, ...] = ("task", "type", "labels")):
    """(line index, header cells, cells) of each row of the card's table whose header starts with `columns`
    (the default: the table of tasks, as model_card writes it)."""
    header = None
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if tuple(cells[:len(columns)]) == columns:
            header = cells
        elif header and len(cells) == len(header) and not set(cells[0]) <= set("-: "):
            yield i, header, cells


def table_metrics(card: str) -> dict[str, dict[str, dict[str, float]]]:
    """{task: {split: {metric: value}}} from a model card's table (as model_card writes it)."""
    metrics = {}
    for _, header, cells in card_rows(card.splitlines()):
        for split, cell in zip(header[3:], cells[3:]):
            values = {}
            for part in cell.split(", "):
                name, _, value = part.rpartition(" ")
                try:
                    values[name] = float(value)
                except ValueError:
                    pass
            if values:
                metrics.setdefault(cells[0], {})[split] = values
    return metrics


def onnx_card(card: str | None, source: str, export_dir: Path, quantize: str | None, chosen: bool = False,
              revision: str | None = None) -> str:
    """The card of an ONNX export (in `export_dir`) of `source`: a card of the exported heads (`chosen`: the
    command named them) with the source card's metrics and data sets, and a section saying what the folder is
    and where its metrics come from."""
    from huggingface_hub import ModelCard

    config = saved_config(export_dir)
    tasks = list(config.tasks)
    metrics: dict = {"tasks": table_metrics(card or "")}
    kept = r"^(?:Kept model|Best checkpoint): step (\d+)(?: of (\d+) trained)?(?: \(early stopping; (\d+) planned\))?"
    if best := re.search(kept, card or "", re.MULTILINE):  # (Best checkpoint: older cards)
        metrics["best_step"] = int(best[1])
        if best[2]:
            metrics["steps"] = {"trained": int(best[2]), "planned": int(best[3] or best[2])}
    datasets = None
    if card and card.startswith("---"):  # (huggingface_hub logs a warning for a card without metadata)
        try:
            datasets = ModelCard(card).data.to_dict().get("datasets")
        except Exception:  # a card's metadata is optional, and only copied
            pass
    command = (f"mtnlp export {hub_id(source) or 'MODEL'}" + f" --revision {revision}" * bool(revision) + " --onnx"
               + "".join(f" --task {t}" for t in tasks) * chosen + " --quantize int8" * bool(quantize))
    if not any(metrics["tasks"].values()):
        measured = "`mtnlp evaluate` on this folder measures its metrics."
    elif quantize:
        measured = ("The metrics above were measured on the PyTorch model: int8 weights move them a little; "
                    "`mtnlp evaluate` on this folder measures its own.")
    else:
        measured = ("The metrics above were measured on the PyTorch model; the fp32 graph gives the same logits "
                    "(atol 1e-4).")
    return "\n".join([model_card(config, metrics, datasets, onnx=True).rstrip("\n"), "", "## ONNX export", "",
                      f"This folder is `{command}` output (heads: {', '.join(tasks)}): `mtnlp predict`, `mtnlp serve` "
                      f"and `MultiTaskPipeline.from_pretrained` run it with onnxruntime. {measured}", ""])


def saved_config(model_dir: Path):
    """config.json of a model folder, as model_card reads it (`.tasks`, `.mtnlp`, `.encoder.model_type`),
    without loading transformers: a push needs only huggingface_hub."""
    from types import SimpleNamespace

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return SimpleNamespace(tasks=in_task_order(config.get("tasks") or {}, config.get("task_order")),
                           mtnlp=config.get("mtnlp"), sharing=config.get("sharing"),
                           encoder=SimpleNamespace(model_type=(config.get("encoder") or {}).get("model_type")))


def run_metrics(model_dir: Path, config, run_dir: Path | None = None) -> dict | None:
    """The run's metrics.json (`run_dir`, or the folder above the model's), if it is this model's (`config`,
    saved_config's): tasks it has and its best step. Another run's metrics beside a copied model folder are
    not its metrics."""
    path = (run_dir or model_dir.parent) / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    step = (config.mtnlp or {}).get("step")
    if not set(metrics.get("tasks", {})) <= set(config.tasks) or (step is not None and metrics.get("best_step") != step):
        return None
    return metrics


def write_card(model_dir: Path, run_dir: Path | None = None, datasets: list[str] | None = None) -> None:
    """Write model_dir/README.md (and copy the run's curves.png beside it)."""
    config = saved_config(model_dir)
    text = model_card(config, run_metrics(model_dir, config, run_dir), datasets)
    curves = (run_dir or model_dir.parent) / "curves.png"
    if curves.exists():
        shutil.copyfile(curves, model_dir / "curves.png")
        text += "\n## Training curves\n\n![training curves](curves.png)\n"
    (model_dir / "README.md").write_text(text, encoding="utf-8")


def pushed_files(model_dir: Path) -> list[Path]:
    """The files a push uploads: the folder's, without hidden ones (.git/, the .cache/ that `hf download
    --local-dir` writes, .DS_Store, .ipynb_checkpoints/), which the hub refuses or nobody means to publish.
    A link to a file outside the folder is an error: a push would publish what it points to (a key, or
    /proc/self/environ with the hub token). A hub cache snapshot's links to its repo's blobs are its own files."""
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and not hidden(p.relative_to(model_dir)))
    own = model_dir.resolve()
    cache = own.parent.parent
    blobs = cache / "blobs" if own.parent.name == "snapshots" and cache.name.startswith(("models--", "datasets--")) \
        else None  # huggingface_hub's cache: models--NS--NAME/snapshots/REV/FILE -> ../../blobs/HASH
    for p in files:
        target = p.resolve()
        if blobs is not None and target.parent == blobs:
            continue
        if not target.is_relative_to(own):
            raise UserError(f"{p}: a link to {target}, outside the model folder: a push uploads the folder's own "
                            "files only (copy the file in, or remove the link)")
        if hidden(target.relative_to(own)):
            raise UserError(f"{p}: a link to {target}, a hidden file, which a push leaves out (.git/ may hold a "
                            "token): remove the link")
    return files


def hidden(relative: Path) -> bool:
    """Whether a path in a folder is hidden, or in a hidden folder (.git/config)."""
    return any(part.startswith(".") for part in relative.parts)


def push(model_dir: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
         token: str | None = None, commit_message: str = "Upload mtnlp multi-task model") -> str:
    """Upload a model folder (every file in it) in one commit; returns the commit URL. With `private`, an
    existing public repo is made private (before the upload), and a UserWarning says so (the CLI prints it)."""
    model_dir = Path(model_dir)
    check_model_folder(model_dir)
    files = pushed_files(model_dir)
    if problem := repo_id_problem(repo_id):
        raise UserError(problem)
    if token is not None:
        token = token.strip()  # as huggingface_hub does with HF_TOKEN: a pasted newline is no header value
        if not token:
            raise UserError("token is empty: give a hub token, or none to use HF_TOKEN or the saved login")
    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        raise UserError(f"revision {revision}: a commit id; a push goes to a branch: give its name")
    if revision == "":
        raise UserError("revision is empty: give a branch name, or none for main")
    # a folder without a card (e.g. a model folder copied out of its run) gets one, in the commit only
    card = None
    if not (model_dir / "README.md").exists():
        config = saved_config(model_dir)
        card = model_card(config, run_metrics(model_dir, config))
    api = HfApi(token=token)
    try:
        # without a namespace the hub creates the repo under the token's user: use the id it answers with
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if private and not api.repo_info(repo_id).private:  # create_repo leaves an existing repo as it is
            api.update_repo_settings(repo_id, private=True)
            warnings.warn(f"{repo_id} was public; made it private as asked", stacklevel=2)
        if revision and revision != "main":
            refs = api.list_repo_refs(repo_id)
            if revision in {tag.name for tag in refs.tags}:
                raise UserError(f"revision {revision}: a tag of {repo_id}; a push goes to a branch: give a "
                                "branch name")
            branches = {branch.name for branch in refs.branches}
            # loading it would be ambiguous (a name of digits only, e.g. a date, is taken as a name)
            if re.fullmatch(r"[0-9a-f]{7,39}", revision) and not revision.isdigit() and revision not in branches:
                raise UserError(f"revision {revision}: reads as the start of a commit id, and {repo_id} has no "
                                "branch of that name; a push goes to a branch: give a name that is not hexadecimal")
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        operations = [CommitOperationAdd(str(p.relative_to(model_dir)), pushed_card(p.read_text(encoding="utf-8"),
                                         repo_id, revision) if p == model_dir / "README.md" else str(p))
                      for p in files]
        if card is not None:
            operations.append(CommitOperationAdd("README.md", pushed_card(card, repo_id, revision)))
        # the revision becomes the folder: a file an earlier push left (another model's eval-validation.json) goes
        stale = sorted(set(api.list_repo_files(repo_id, revision=revision)) - {op.path_in_repo for op in operations}
                       - {".gitattributes"})
        operations += [CommitOperationDelete(path) for path in stale]
        info = api.create_commit(repo_id, operations, commit_message=commit_message, revision=revision)
        if stale:
            warnings.warn(f"{repo_id}: removed {len(stale)} file(s) the folder does not have: "
                          f"{', '.join(stale[:5])}{', ...' if len(stale) > 5 else ''}", stacklevel=2)
    except RepositoryNotFoundError:
        raise UserError(f"{repo_id}: repository not found, or the token may not write to it") from None
    except (HfHubHTTPError, OSError, *transport_errors()) as e:  # an HTTP error; connection refused, DNS, timeouts
        raise _push_error(repo_id, e) from None
    except RuntimeError as e:  # huggingface_hub wraps a failed LFS upload: "Error while uploading 'x' to the Hub."
        if not isinstance(e.__cause__, (HfHubHTTPError, OSError, *transport_errors())):
            raise
        raise _push_error(repo_id, e.__cause__, f"{first_line(e).rstrip('.')}: ") from None
    return info.commit_url


def check_push_access(repo_id: str) -> None:
    """A UserError when a push to `repo_id` cannot work for want of a token or a hub: no token, one the hub
    refuses or that may only read, no connection. A recipe's push_to_hub asks before training, not after."""
    try:
        auth = HfApi().whoami().get("auth") or {}
    except LocalTokenNotFoundError:
        raise UserError(f"push to {repo_id}: no hub token: set HF_TOKEN or run `hf auth login`") from None
    except (HfHubHTTPError, OSError, *transport_errors()) as e:  # a refused token; no connection, HF_HUB_OFFLINE
        raise _push_error(repo_id, e) from None
    if (auth.get("accessToken") or {}).get("role") == "read":
        raise UserError(f"push to {repo_id}: the hub token may only read: give a token with write access")


def pushed_card(card: str, repo_id: str, revision: str | None = None) -> bytes:
    """The model card as pushed: its usage lines load the model by the repo's id, and from the pushed branch
    (model_card writes a placeholder, since the card is written before anyone knows where the model will go;
    a card pushed before, e.g. of a downloaded model, names the repo it was pushed to: that name is replaced)."""
    card = re.sub(r'MultiTaskPipeline\.from_pretrained\("[^"\n]*"(, revision="[^"\n]*")?\)',
                  f'MultiTaskPipeline.from_pretrained("{CARD_PLACEHOLDER}")', card)
    card = re.sub(r"`mtnlp export \S+( --revision \S+)? --task", f"`mtnlp export {CARD_PLACEHOLDER} --task", card)
    if revision and revision != "main":
        card = (card.replace(f'"{CARD_PLACEHOLDER}")', f'"{CARD_PLACEHOLDER}", revision="{revision}")')
                .replace(f"{CARD_PLACEHOLDER} --", f"{CARD_PLACEHOLDER} --revision {revision} --"))
    return card.replace(CARD_PLACEHOLDER, repo_id).encode()


def repo_id_problem(repo_id: str) -> str | None:
    """What is wrong with a repo id, or None."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        if page := HUB_PAGE.match(repo_id):
            return f"repo id '{repo_id}' is a hub page's address: give the id {page[1]}"
        return (f"repo id '{repo_id}' is not valid: give NAME or NAMESPACE/NAME of letters, digits, "
                "'-', '_' and '.' (e.g. my-org/my-model)")
    return None


def _push_error(repo_id: str, error: Exception, context: str = "") -> UserError:
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else "?"
        # the server's own words ("You don't have the rights to ...") say more than the client's status line
        detail = first_line(Exception(error.server_message)) if getattr(error, "server_message", None) else ""
        detail = detail or first_line(error)
        if status in (401, 403):
            detail += f" (check that the token may write to '{repo_id.split('/')[0]}')"
        return UserError(f"push to {repo_id} failed (HTTP {status}): {context}{detail}")
    return UserError(f"push to {repo_id} failed: cannot reach the hub ({context}{first_line(error)})")


def transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's network error classes (huggingface_hub 2.x uses httpx2, older ones httpx)."""
    errors = []
    for module in ("httpx2", "httpx"):
        try:
            errors.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)
