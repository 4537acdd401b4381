"""Every user mistake, through the real command line: exit status 2, ONE stderr line `error: <where>: <what>`
that names the file and line (or the recipe key / option), and no traceback.

Each case is its own test (`test_bad_input[<case>]`). Starting Python with torch, transformers and datasets costs
a few seconds per process, so the first case that runs runs the command lines of all selected cases at once, each in
its own process forked from one that imported them (cli_runner), and each test then checks its own process's result.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml
from cli_runner import CliSession
from conftest import DATA

TIMEOUT = 300


@dataclass
class Ctx:
    """What a case's setup gets: the make_recipe factory, a folder of its own, a tiny encoder and model."""

    make_recipe: Callable
    folder: Path
    encoder: str
    model: Path

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
        return path

    def recipe(self, **kwargs) -> Path:
        return self.make_recipe(name=f"{self.folder.name}.yaml", **kwargs)

    def one_task(self, train: Path | str, task_type: str = "classification", **data) -> dict:
        spec = {"train": str(train), **data}
        if "validation" not in data:
            spec["validation_from_train"] = 0.5
        return {"t": {"type": task_type, "data": spec}}


@dataclass
class Case:
    id: str
    setup: Callable[[Ctx], tuple[list[str], str, list[str]]]  # -> (argv after `mtnlp`, where, fragments)
    result: dict = field(default_factory=dict)


def line_of(path: Path, pattern: str, occurrence: int = 1) -> int:
    """The 1-based line of the n-th line of `path` that matches `pattern` (re.search)."""
    hits = [i for i, line in enumerate(path.read_text().split("\n"), 1) if re.search(pattern, line)]
    assert len(hits) >= occurrence, (pattern, path.read_text())
    return hits[occurrence - 1]


def train(recipe: Path, *overrides: str) -> list[str]:
    return ["train", str(recipe), *overrides]


# ---------------------------------------------------------------- data files


def missing_data_file(c: Ctx):
    path = c.folder / "nope.tsv"
    recipe = c.recipe(tasks=c.one_task(path))
    return train(recipe), f"{recipe}:", [".data.train: ", f"{path}: file not found"]


def unreadable_data_file(c: Ctx):
    # tests run as root, where chmod 000 does not stop reads: a directory in place of the file cannot be read either
    path = c.folder / "train.tsv"
    path.mkdir()
    recipe = c.recipe(tasks=c.one_task(path))
    return train(recipe), f"{recipe}:", [".data.train: ", f"{path}: is a folder, expected a data file"]


def unknown_format_suffix(c: Ctx):
    path = c.file("train.xlsx", "text\tlabel\na\t1\nb\t0\n")
    return train(c.recipe(tasks=c.one_task(path))), f"{path}:", ["unknown file format '.xlsx'", "data.format"]


def missing_column(c: Ctx):
    path = c.file("train.tsv", "sentence\tlabel\nhello there\t1\nbye\t0\n")
    return train(c.recipe(tasks=c.one_task(path))), f"{path}:2:", ["missing column 'text'", "sentence"]


def empty_split_header_only(c: Ctx):
    path = c.file("dev.csv", "question,label\n")
    tasks = c.one_task(DATA / "trec_sample.csv", validation=str(path), text_column="question")
    return train(c.recipe(tasks=tasks)), f"{path}:1:", ["only a header row", "no examples"]


def whitespace_only_text(c: Ctx):
    path = c.file("train.tsv", "text\tlabel\nfine\t1\n   \t0\nalso fine\t0\n")
    return train(c.recipe(tasks=c.one_task(path))), f"{path}:3:", ["empty text", "'text'"]


def label_unseen_in_train(c: Ctx):
    path = c.file("dev.csv", "question,label\nWho wrote Hamlet ?,HUM\nWhat is 2+2 ?,MATH\n")
    tasks = c.one_task(DATA / "trec_sample.csv", validation=str(path), text_column="question")
    return train(c.recipe(tasks=tasks)), f"{path}:3:", ["label 'MATH'", "training split"]


def conll_column_count_mismatch(c: Ctx):
    path = c.file("train.conll", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                                 "German JJ B-MISC\ncall NN B-NP O\n")
    tasks = c.one_task(path, "tagging", validation=str(DATA / "ner_sample_dev.conll"))
    return train(c.recipe(tasks=tasks)), f"{path}:6:", ["3 columns", "expected 4"]


def malformed_conllu_line(c: Ctx):
    good = "1\tHello\thello\tINTJ\tUH\t_\t0\troot\t0:root\t_\n"
    bad = "2\tworld\tworld\tNOUN\tNN\t_\t1\tvocative\t1:vocative\n"  # 9 columns: MISC is missing
    path = c.file("train.conllu", "# sent_id = 1\n# text = Hello world\n" + good + bad)
    tasks = c.one_task(path, "tagging", validation=str(DATA / "ud_sample.conllu"))
    return train(c.recipe(tasks=tasks)), f"{path}:4:", ["9 tab-separated columns", "CoNLL-U needs 10"]


def non_utf8_bytes(c: Ctx):
    path = c.file("train.tsv", b"text\tlabel\nplain\t1\ncaf\xe9 au lait\t0\n")
    return train(c.recipe(tasks=c.one_task(path))), f"{path}:3:", ["0xe9", "utf-8", "data.encoding"]


def invalid_json_line(c: Ctx):
    path = c.file("train.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": 0}\n{"text": "c",\n')
    return train(c.recipe(tasks=c.one_task(path))), f"{path}:4:", ["invalid JSON"]


def validation_from_train_leaving_no_training_example(c: Ctx):
    path = c.file("train.tsv", "text\tlabel\ngood\tpos\nbad\tneg\n")
    recipe = c.recipe(tasks={"t": {"type": "classification", "data": {"train": str(path), "validation_from_train": 0.9}}})
    return train(recipe), f"{recipe}:{line_of(recipe, '^ *validation_from_train:')}:", [
        "tasks.t.data.validation_from_train: 0.9 of", f"{path}'s 2 example(s) leaves none to train on"]


def tune_thresholds_without_a_validation_split(c: Ctx):
    path = c.file("train.jsonl", '{"text": "a", "labels": ["x"]}\n{"text": "b", "labels": []}\n')
    tasks = {"t": {"type": "multilabel", "tune_thresholds": True, "data": {"train": str(path), "label_column": "labels"}}}
    recipe = c.recipe(tasks=tasks)
    return train(recipe), f"{recipe}:{line_of(recipe, '^ *tune_thresholds:')}:", [
        "tasks.t.tune_thresholds: thresholds are tuned on the validation split"]


def lines_task(c: Ctx, text: str, labels: str, task_type: str = "classification", **data) -> tuple[dict, Path, Path]:
    """One task whose train split is line-aligned text and labels files (format lines)."""
    text_path, labels_path = c.file("train_text.txt", text), c.file("train_labels.txt", labels)
    spec = {"train": {"text": str(text_path), "labels": str(labels_path)}, **data}
    if "validation" not in data:
        spec["validation_from_train"] = 0.5
    return {"t": {"type": task_type, "data": spec}}, text_path, labels_path


def lines_count_mismatch(c: Ctx):
    tasks, text, labels = lines_task(c, "happy day\nawful day\nfine day\n", "joy\nanger\n")
    return train(c.recipe(tasks=tasks)), f"{text}:3:", [f"{text} has 3 lines", f"{labels} has 2"]


def lines_empty_label_line(c: Ctx):
    tasks, _, labels = lines_task(c, "happy day\nawful day\nfine day\n", "joy\n \njoy\n")
    return train(c.recipe(tasks=tasks)), f"{labels}:2:", ["empty line", "label"]


def lines_validation_label_unseen_in_train(c: Ctx):
    val_text, val_labels = c.file("val_text.txt", "great\nscary\n"), c.file("val_labels.txt", "joy\nfear\n")
    tasks, _, _ = lines_task(c, "happy day\nawful day\n", "joy\nanger\n",
                             validation={"text": str(val_text), "labels": str(val_labels)})
    return train(c.recipe(tasks=tasks)), f"{val_labels}:2:", ["label 'fear'", "training split"]


def lines_format_with_a_plain_path(c: Ctx):
    path = c.file("train.txt", "happy day\nawful day\n")
    recipe = c.recipe(tasks=c.one_task(path, format="lines"))
    return (train(recipe), f"{recipe}:{line_of(recipe, r'^      train:')}:",
            ["tasks.t.data.train", "{text: FILE, labels: FILE}"])


def headerless_row_too_short(c: Ctx):
    path = c.file("sts.tsv", "g\tf\t2012\t1\t5.0\tA plane.\tA jet.\textra\ng\tf\t2012\t2\t3.0\tOne sentence\n")
    tasks = c.one_task(path, "regression", format="tsv", header=False, text_column=5, text_pair_column=6,
                       label_column=4)
    return train(c.recipe(tasks=tasks)), f"{path}:2:", ["6 fields", "text_pair_column", "position 6"]


def column_position_with_header_row(c: Ctx):
    recipe = c.recipe(tasks=c.one_task(DATA / "trec_sample.csv", text_column=1))
    return (train(recipe), f"{recipe}:{line_of(recipe, r'^      text_column:')}:",
            ["tasks.t.data.text_column", "header: false"])


# ---------------------------------------------------------------- recipes


def unknown_recipe_key(c: Ctx):
    recipe = c.recipe(training={"lrr": 0.001})
    return train(recipe), f"{recipe}:{line_of(recipe, r'^  lrr:')}:", ["unknown key 'training.lrr'"]


def wrong_value_type(c: Ctx):
    recipe = c.recipe(training={"steps": "ten"})
    return train(recipe), f"{recipe}:{line_of(recipe, r'^  steps:')}:", ["training.steps", "expected int", "'ten'"]


def negative_lr(c: Ctx):
    recipe = c.recipe(training={"lr": -0.001})
    return train(recipe), f"{recipe}:{line_of(recipe, r'^  lr:')}:", ["training.lr", "must be > 0"]


def temperature_zero(c: Ctx):
    recipe = c.recipe(sampling={"strategy": "temperature", "temperature": 0})
    return (train(recipe), f"{recipe}:{line_of(recipe, r'^  temperature:')}:",
            ["sampling.temperature", "must be > 0"])


def empty_task_list(c: Ctx):
    recipe = c.recipe()
    data = yaml.safe_load(recipe.read_text())
    data["tasks"] = {}
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    return train(recipe), f"{recipe}:{line_of(recipe, r'^tasks:')}:", ["tasks", "at least one task"]


def duplicate_task_names(c: Ctx):
    tasks = {"sentiment": {"type": "classification", "data": {"train": str(DATA / "sst2_sample.jsonl"),
                                                              "validation_from_train": 0.25,
                                                              "text_column": "sentence"}},
             "sentiment_copy": {"type": "regression", "data": {"train": str(DATA / "regression_sample.csv"),
                                                               "validation_from_train": 0.25,
                                                               "label_column": "score"}}}
    recipe = c.recipe(tasks=tasks)
    recipe.write_text(recipe.read_text().replace("  sentiment_copy:", "  sentiment:"))
    return train(recipe), f"{recipe}:{line_of(recipe, r'^  sentiment:', 2)}:", ["duplicate key 'tasks.sentiment'"]


def unknown_sampler(c: Ctx):
    recipe = c.recipe(sampling={"strategy": "random"})
    return (train(recipe), f"{recipe}:{line_of(recipe, r'^  strategy:')}:",
            ["sampling.strategy", "'random'", "round_robin"])


def unknown_metric(c: Ctx):
    data = {"train": str(DATA / "ner_sample.conll"), "validation": str(DATA / "ner_sample_dev.conll")}
    tasks = {"ner": {"type": "tagging", "metrics": ["seqeval", "bleu"], "data": data}}
    recipe = c.recipe(tasks=tasks)
    return (train(recipe), f"{recipe}:{line_of(recipe, r'^    metrics:')}:",
            ["tasks.ner.metrics", "unknown metric 'bleu'", "token_accuracy"])


def unknown_task_type(c: Ctx):
    tasks = {"ner": {"type": "ranking", "data": {"train": str(DATA / "ner_sample.conll")}}}
    recipe = c.recipe(tasks=tasks)
    return (train(recipe), f"{recipe}:{line_of(recipe, r'^    type:')}:",
            ["tasks.ner.type", "'ranking'", "classification, regression, tagging"])


# ---------------------------------------------------------------- evaluate / predict


def evaluate_folder_that_is_not_a_model(c: Ctx):
    folder = c.folder / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("just notes\n")
    return ["evaluate", str(folder), str(c.recipe())], f"{folder}:", ["not a model folder (no config.json)"]


def evaluate_a_task_the_model_does_not_have(c: Ctx):
    recipe = c.recipe()  # (was: the file, no line)
    return ["evaluate", str(c.model), str(recipe)], f"{recipe}:{line_of(recipe, r'^  score:')}:", \
        ["tasks.score: the model has no such task (it has: sentiment, ner)"]


def evaluate_a_task_of_another_type_than_the_models_head(c: Ctx):
    recipe = c.recipe(tasks={"sentiment": {"type": "regression", "data": {"train": str(DATA / "regression_sample.csv"),
                                                                          "label_column": "score"}}})
    return ["evaluate", str(c.model), str(recipe)], f"{recipe}:{line_of(recipe, r'^    type:')}:", \
        ["tasks.sentiment.type: regression, but the model's head is classification"]


def evaluate_a_split_no_task_has(c: Ctx):
    recipe = c.recipe(tasks={"sentiment": c.one_task(DATA / "sst2_sample.jsonl", text_column="sentence")["t"]})
    return ["evaluate", str(c.model), str(recipe), "--split", "test"], f"{recipe}:{line_of(recipe, r'^tasks:')}:", \
        ["no task has a test split (tasks.NAME.data.test): give --split validation for the validation split"]


def predict_a_model_of_a_task_type_this_mtnlp_lacks(c: Ctx):
    model = edited_config(c, lambda config: config["tasks"]["ner"].update(type="ner"))  # (an extension's type)
    return ["predict", str(model), "text"], f"{model}: config.json: tasks.ner.type: ", [
        "task type 'ner' is not one this mtnlp knows (classification, "]


def evaluate_base_encoder_instead_of_model(c: Ctx):
    # the recipe's encoder (a plain BERT folder) is a model, but not an mtnlp multi-task model
    return (["evaluate", c.encoder, str(c.recipe())], f"{c.encoder}:",
            ["a bert model, not an mtnlp multi-task model"])


def encoder_that_is_a_trained_mtnlp_model(c: Ctx):
    # meant as model.init_from: a 53-line traceback after the data was read ('MultiTaskConfig' has no hidden_size)
    recipe = c.recipe()
    return train(recipe, f"model.encoder={c.model}"), f"{recipe} (command-line override):", \
        [f"model.encoder: {c.model}: an mtnlp multi-task model; to start from a trained mtnlp model, set model.init_from"]


def encoder_folder_without_a_config(c: Ctx):
    folder = c.folder / "empty"
    folder.mkdir()  # was: cannot load (Couldn't instantiate the backend tokenizer from one of: )
    recipe = c.recipe()
    return train(recipe, f"model.encoder={folder}"), f"{recipe} (command-line override):", \
        [f"model.encoder: {folder}: not a model folder (no config.json)"]


def predict_task_the_model_does_not_have(c: Ctx):
    return (["predict", str(c.model), "--tasks", "sentiment,topic", "some text"], "--tasks:",
            ["no task 'topic'", "it has: ", "sentiment", "ner"])


def predict_batch_size_zero(c: Ctx):
    return ["predict", str(c.model), "some text", "--batch-size", "0"], "--batch-size:", ["at least 1", "got 0"]


def predict_output_in_a_missing_folder(c: Ctx):
    out = c.folder / "no" / "out.jsonl"
    return ["predict", str(c.model), "some text", "--output", str(out)], f"--output {out}:", ["does not exist"]


def evaluate_output_in_a_missing_folder(c: Ctx):
    out = c.folder / "no" / "eval.json"
    return (["evaluate", str(c.model), str(c.recipe()), "--output", str(out)], f"--output {out}:",
            ["does not exist"])


def evaluate_override_after_an_option(c: Ctx):
    # key=value after --split is an override like one before it (it was "unrecognized arguments")
    recipe = c.recipe()
    return (["evaluate", str(c.model), str(recipe), "--split", "validation", "training.lr=-1"],
            f"{recipe} (command-line override):", ["training.lr", "must be > 0"])


def model_folder_missing_under_an_existing_folder(c: Ctx):
    # "runs/demo" is also a hub id's shape: the existing folder "runs" says it is a path (no hub look-up)
    (c.folder / "runs").mkdir()
    return ["predict", "runs/nosuch", "some text"], "runs/nosuch:", ["model folder not found"]


def export_onto_a_file(c: Ctx):
    path = c.file("taken", "")
    return ["export", str(c.model), "--task", "sentiment", str(path)], "export:", [f"{path} is a file"]


def predict_with_a_run_folder(c: Ctx):
    (c.folder / "run").mkdir()
    (c.folder / "run" / "model").symlink_to(c.model)
    return ["predict", str(c.folder / "run"), "text"], f"{c.folder / 'run'}:", ["a run folder; give its model folder"]


def predict_input_with_a_lone_surrogate(c: Ctx):
    path = c.file("in.jsonl", '{"text": "fine"}\n{"text": "ok \\ud800 x"}\n')
    return ["predict", str(c.model), "--input", str(path)], f"{path}:2:", ["lone surrogate"]


def predict_input_with_a_lone_surrogate_in_a_key_it_echoes(c: Ctx):
    # refused before any prediction: it failed when its line was written (a traceback, later lines never written)
    path = c.file("in.jsonl", '{"text": "fine"}\n{"text": "ok", "id\\ud800": 1}\n')
    return ["predict", str(c.model), "--input", str(path)], f"{path}:2:", ["lone surrogate"]


def predict_input_not_utf8(c: Ctx):
    # the line is named, as the data readers name it (it was a bare "'utf-8' codec can't decode")
    path = c.file("in.jsonl", b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    return ["predict", str(c.model), "--input", str(path)], f"{path}:2:", ["byte 0xe9 is not valid utf-8", "iconv"]


def predict_input_of_blank_lines(c: Ctx):
    path = c.file("in.jsonl", "\n  \n")
    return ["predict", str(c.model), "--input", str(path)], f"{path}:", ["no inputs"]


def export_into_the_model_folder(c: Ctx):
    return ["export", str(c.model), "--task", "sentiment", str(c.model)], "export:", ["is not empty", "never overwrites"]


def damaged_weights_file(c: Ctx):
    import shutil

    copy = shutil.copytree(c.model, c.folder / "damaged")
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:1000])
    return ["predict", str(copy), "some text"], f"{copy / 'model.safetensors'}:", \
        ["not a readable safetensors file (cut short: its header is longer than the file)"]


def predict_with_a_file_left_in_git_lfs(c: Ctx, name: str, what: str):
    """A model repository cloned without git-lfs: `name` is a pointer, which predict names as one."""
    import shutil

    copy = shutil.copytree(c.model, c.folder / "lfs")
    (copy / name).write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{'0' * 64}\nsize 1234567\n")
    return ["predict", str(copy), "some text"], f"{copy / name}:", \
        [f"a Git LFS pointer, not the {what}: the repository was cloned without its large files (`git lfs pull`"]


def weights_left_in_git_lfs(c: Ctx):  # it was "cut short: its header is longer than the file"
    return predict_with_a_file_left_in_git_lfs(c, "model.safetensors", "weights")


def tokenizer_left_in_git_lfs(c: Ctx):  # it was "no tokenizer that loads (Expecting value: line 1 column 1 (char 0))"
    return predict_with_a_file_left_in_git_lfs(c, "tokenizer.json", "file")


def export_quantize_without_onnx(c: Ctx):
    return ["export", str(c.model), "--quantize", "int8", str(c.folder / "out")], "export:", ["--quantize applies to --onnx"]


def recipes_copy_into_a_missing_folder(c: Ctx):
    return ["recipes", "copy", "multitask", str(c.folder / "no" / "x.py")], "recipes copy:", ["does not exist"]


def recipes_copy_into_a_missing_folder_with_a_slash(c: Ctx):  # not a file named like the folder
    return ["recipes", "copy", "demo.yaml", str(c.folder / "newdir") + "/"], "recipes copy:", ["folder", "does not exist"]


def recipes_list_with_an_argument(c: Ctx):
    return ["recipes", "list", "bogus"], "recipes list", ["takes no arguments (got: bogus)"]


def output_dir_that_cannot_be_created(c: Ctx):
    # /proc takes no folders (for root too): said before the data is read, not as a traceback after it
    recipe = c.recipe()
    return ["train", str(recipe), "output_dir=/proc/mtnlp-run"], f"{recipe} (command-line override):", \
        ["output_dir: /proc/mtnlp-run: cannot write in /proc"]


def predict_tasks_empty(c: Ctx):
    # an empty $TASKS in a script meant every head, silently
    return ["predict", str(c.model), "text", "--tasks", ""], "--tasks '':", ["an empty task name"]


def predict_tasks_with_an_empty_name(c: Ctx):
    return ["predict", str(c.model), "text", "--tasks", "sentiment,,ner"], "--tasks 'sentiment,,ner':", \
        ["an empty task name"]


def predict_tasks_ending_with_a_comma(c: Ctx):  # was "the model has no task ''"
    return ["predict", str(c.model), "text", "--tasks", "sentiment,"], "--tasks 'sentiment,':", ["an empty task name"]


def predict_a_checkpoint_folder(c: Ctx):
    folder = c.folder / "checkpoints" / "step-000004"
    folder.mkdir(parents=True)
    c.file("checkpoints/step-000004/trainer_state.json", "{}")
    return ["predict", str(folder), "text"], f"{folder}:", ["a training checkpoint, or a run that has not finished"]


def predict_a_file_as_the_model(c: Ctx):
    return ["predict", str(c.model / "config.json"), "text"], f"{c.model / 'config.json'}:", \
        ["a file, not a model folder"]


def copy_of_the_model(c: Ctx) -> Path:
    import shutil

    return Path(shutil.copytree(c.model, c.folder / "model"))


def push_weights_cut_short(c: Ctx):
    # a copy interrupted, or a full disk: uploaded with exit status 0 before
    model = copy_of_the_model(c)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])
    return ["push", str(model), "me/model"], f"{weights}:", ["cut short or damaged: 100,000 bytes"]


def predict_config_without_a_tasks_labels(c: Ctx):
    import json

    model = copy_of_the_model(c)
    config = json.loads((model / "config.json").read_text())
    del config["tasks"]["sentiment"]["labels"]
    (model / "config.json").write_text(json.dumps(config))
    return ["predict", str(model), "text"], f"{model}:", ["its config.json does not describe an mtnlp model that loads",
                                                        "tasks['sentiment']['labels']: expected a list of at least 2"]


def predict_config_whose_tasks_are_a_list(c: Ctx):  # was a TypeError's text: "dictionary update sequence element"
    model = edited_config(c, lambda config: config.update(tasks=list(config["tasks"].values())))
    return ["predict", str(model), "text"], f"{model}:", ["its config.json does not describe an mtnlp model that loads",
                                                        "tasks: expected a non-empty dict of task specs"]


def predict_config_without_its_encoder(c: Ctx):  # was "does not fit its weights": the encoder became bert-base's
    model = edited_config(c, lambda config: config.pop("encoder"))
    return ["predict", str(model), "text"], f"{model}:", ["its config.json does not describe an mtnlp model that loads",
                                                        "encoder: a model with tasks needs its encoder's config"]


def predict_a_model_whose_tokenizer_json_is_damaged(c: Ctx):
    model = copy_of_the_model(c)  # a KeyError traceback from transformers' tokenizer loading
    (model / "tokenizer.json").write_text("{}")
    return ["predict", str(model), "text"], f"{model}:", ["its tokenizer does not load (a damaged tokenizer.json? "
                                                         "KeyError: 'added_tokens')"]


def edited_config(c: Ctx, edit: Callable[[dict], None]) -> Path:
    """A copy of the model whose config.json `edit` changed."""
    import json

    model = copy_of_the_model(c)
    config = json.loads((model / "config.json").read_text())
    edit(config)
    (model / "config.json").write_text(json.dumps(config))
    return model


def edited_weights(c: Ctx, edit: Callable[[dict], None]) -> Path:
    """A copy of the model whose model.safetensors `edit` changed (a dict of tensors)."""
    from safetensors.torch import load_file, save_file

    model = copy_of_the_model(c)
    weights = load_file(model / "model.safetensors")
    edit(weights)
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    return model


def predict_a_model_whose_config_has_more_layers_than_its_weights(c: Ctx):
    # transformers built each missing layer with random weights: 3 for 2 predicted at random, 100000 took 8 GB
    model = edited_config(c, lambda config: config["encoder"].update(num_hidden_layers=100_000))
    return ["predict", str(model), "text"], f"{model}:", ["config.json does not fit its weights (its encoder has "
                                                         "100,000 layers, the weights hold 2)"]


def predict_a_sharded_model_whose_config_has_more_layers_than_its_weights(c: Ctx):
    # its weights' names are in model.safetensors.index.json: 3,000 layers were built before the refusal
    import json

    from mtnlp.modeling import MultiTaskModel

    model = c.folder / "sharded"
    MultiTaskModel.from_pretrained(c.model).save_pretrained(model, max_shard_size="100KB")
    assert (model / "model.safetensors.index.json").exists() and not (model / "model.safetensors").exists()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model / name).write_bytes((c.model / name).read_bytes())
    config = json.loads((model / "config.json").read_text())
    config["encoder"]["num_hidden_layers"] = 100_000
    (model / "config.json").write_text(json.dumps(config))
    return ["predict", str(model), "text"], f"{model}:", ["config.json does not fit its weights (its encoder has "
                                                         "100,000 layers, the weights hold 2)"]


def predict_a_model_whose_weights_lack_an_encoder_weight(c: Ctx):
    model = edited_weights(c, lambda weights: weights.pop("encoder.embeddings.LayerNorm.bias"))  # was: a random one
    return ["predict", str(model), "text"], f"{model}:", ["config.json does not fit its weights (no weight: "
                                                         "encoder.embeddings.LayerNorm.bias)"]


def predict_a_model_whose_weights_have_one_it_has_no_place_for(c: Ctx):
    import torch

    model = edited_weights(c, lambda weights: weights.update({"encoder.extra.weight": torch.zeros(2)}))
    return ["predict", str(model), "text"], f"{model}:", ["config.json does not fit its weights (a weight it has no "
                                                         "place for: encoder.extra.weight)"]


def predict_a_model_whose_config_sizes_do_not_fit_its_weights(c: Ctx):
    # a RuntimeError traceback pointing at a report transformers' quieted logging did not show
    model = edited_config(c, lambda config: config["encoder"].update(intermediate_size=128))
    # and, with a size as large as 4,000,000, 2.4 GB allocated before the error: the sizes are now compared first
    return ["predict", str(model), "text"], f"{model}:", [
        "config.json does not fit its weights (encoder.encoder.layer.0.intermediate.dense.weight is 64 x 32 in the "
        "weights, 128 x 32 by config.json)"]


def predict_a_model_whose_config_json_nests_too_deeply(c: Ctx):
    model = edited_config(c, lambda config: None)  # a RecursionError traceback
    text = (model / "config.json").read_text()
    (model / "config.json").write_text(text[:-1] + ', "junk": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return ["predict", str(model), "text"], f"{model / 'config.json'}:", ["cannot read", "recursion"]


def predict_a_model_whose_tokenizer_json_nests_too_deeply(c: Ctx):
    model = copy_of_the_model(c)  # a RecursionError traceback from transformers' tokenizer loading
    text = (model / "tokenizer.json").read_text().rstrip()
    (model / "tokenizer.json").write_text(text[:-1] + ', "junk": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return ["predict", str(model), "text"], f"{model}:", ["its tokenizer.json nests too deeply to read"]


def predict_a_model_whose_tokenizer_has_ids_past_the_encoders_vocabulary(c: Ctx):
    from transformers import AutoTokenizer

    model = copy_of_the_model(c)  # loaded, then an IndexError traceback for any text holding the added token
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.add_tokens(["zzzadded"])
    tokenizer.save_pretrained(model)
    return ["predict", str(model), "a zzzadded film"], f"{model}:", [
        f"its tokenizer gives token ids up to {len(tokenizer) - 1:,}, not below the encoder's vocab_size of "
        f"{len(tokenizer) - 1:,}"]


class Payload:
    """Unpickling this would run code (torch's weights_only loading refuses it)."""

    def __reduce__(self):
        return (Path.touch, (Path("/tmp/mtnlp-pwned"),))


def encoder_with_pickled_weights_that_hold_code(c: Ctx):
    import shutil

    import torch
    from safetensors.torch import load_file

    encoder = Path(shutil.copytree(c.encoder, c.folder / "encoder"))  # was: a 51-line UnpicklingError traceback
    weights = load_file(encoder / "model.safetensors")
    (encoder / "model.safetensors").unlink()
    torch.save({**weights, "evil": Payload()}, encoder / "pytorch_model.bin")
    recipe = c.recipe()
    return train(recipe, f"model.encoder={encoder}"), f"{recipe} (command-line override):", \
        [f"model.encoder: {encoder}: its pickled weights (pytorch_model.bin) were refused"]


def encoder_copy(c: Ctx, edit_config=None) -> Path:
    """A copy of the tiny encoder, its config.json edited by `edit_config` (a function of the dict)."""
    import json
    import shutil

    encoder = Path(shutil.copytree(c.encoder, c.folder / "encoder"))
    if edit_config:
        config = json.loads((encoder / "config.json").read_text())
        edit_config(config)
        (encoder / "config.json").write_text(json.dumps(config))
    return encoder


def train_on(c: Ctx, encoder: Path, *fragments: str):
    recipe = c.recipe()
    return train(recipe, f"model.encoder={encoder}"), f"{recipe} (command-line override):", \
        [f"model.encoder: {encoder}: ", *fragments]


def encoder_whose_weights_have_other_names(c: Ctx):
    # saved under another prefix (another library's): trained from random weights, with no word of it
    from safetensors.torch import load_file, save_file

    encoder = encoder_copy(c)
    weights = load_file(encoder / "model.safetensors")
    save_file({f"foo.{k}": v for k, v in weights.items()}, encoder / "model.safetensors", metadata={"format": "pt"})
    return train_on(c, encoder, "its weights lack 37 of the 39 weights config.json gives the encoder "
                                "(e.g. embeddings.LayerNorm.bias), which would start random")


def encoder_config_with_more_layers_than_its_weights(c: Ctx):
    # its layers 3 and 4 trained from random weights, with no word of it
    encoder = encoder_copy(c, lambda config: config.update(num_hidden_layers=4))
    return train_on(c, encoder, "its weights lack 32 of the 71", "(e.g. encoder.layer.2.")


def encoder_config_with_fewer_layers_than_its_weights(c: Ctx):
    # its second layer left out, with no word of it
    encoder = encoder_copy(c, lambda config: config.update(num_hidden_layers=1))
    return train_on(c, encoder, "config.json does not fit its weights (its encoder has 1 layers, the weights hold 2)")


def encoder_config_sizes_do_not_fit_its_weights(c: Ctx):
    # a RuntimeError traceback pointing at a report transformers' quieted logging did not show
    encoder = encoder_copy(c, lambda config: config.update(vocab_size=1000))
    return train_on(c, encoder, "config.json does not fit its weights (embeddings.word_embeddings.weight is "
                                "30522 x 32 in the weights, 1000 x 32 by config.json)")


def encoder_without_weights(c: Ctx):
    encoder = encoder_copy(c)  # was: an OSError traceback after the data was read
    (encoder / "model.safetensors").unlink()
    return train_on(c, encoder, "no weights in it (model.safetensors or pytorch_model.bin)")


def encoder_hub_id_not_in_the_cache_offline(c: Ctx):  # said only "We couldn't connect to 'https://huggingface.co'"
    recipe = c.recipe()
    return train(recipe, "model.encoder=some-org/not-cached"), f"{recipe} (command-line override):", \
        ["model.encoder: cannot load 'some-org/not-cached' (not in the local hub cache, and HF_HUB_OFFLINE is set"]


def encoder_weights_cut_short(c: Ctx):
    encoder = encoder_copy(c)  # was: a SafetensorError traceback after the data was read
    weights = encoder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])
    return train_on(c, encoder, "model.safetensors: cut short or damaged: 100,000 bytes")


def encoder_that_does_not_load_with_sharing_in_the_recipe(c: Ctx):
    # was: named at mtl.sharing's line, as if the sharing setting did not fit the encoder
    encoder = encoder_copy(c, lambda config: config.pop("model_type"))
    recipe = c.recipe(model={"encoder": str(encoder), "max_length": 64}, mtl={"sharing": "lora"})
    return train(recipe), f"{recipe}:{line_of(recipe, r'^  encoder:')}:", \
        [f"model.encoder: {encoder}: Unrecognized model in {encoder}"]


def encoder_of_another_kind(c: Ctx, model_type: str, **config) -> Path:
    """The tiny encoder's folder with a tiny random `model_type` model in place of its BERT."""
    from transformers import AutoConfig, AutoModel

    encoder = encoder_copy(c)
    AutoModel.from_config(AutoConfig.for_model(model_type, vocab_size=30522, **config)).save_pretrained(encoder)
    return encoder


def encoder_that_is_decoder_only(c: Ctx):
    # was: trained, and the model gave every text the same prediction (its first token sees only itself)
    encoder = encoder_of_another_kind(c, "gpt2", n_embd=32, n_layer=2, n_head=2)
    return train_on(c, encoder, "a gpt2 model is decoder-only: each of its tokens sees only the ones before it")


def encoder_decoder_refused_before_the_data_is_read(c: Ctx):
    # was: a traceback at the first training step, after the data was read and tokenised
    encoder = encoder_of_another_kind(c, "t5", d_model=32, num_layers=1, num_heads=2, d_ff=64, d_kv=16)
    recipe = c.recipe(tasks=c.one_task(c.folder / "not-read.tsv"))
    return train(recipe, f"model.encoder={encoder}"), f"{recipe} (command-line override):", \
        [f"model.encoder: {encoder}: a t5 model is an encoder-decoder (is_encoder_decoder)"]


def resume_past_the_recipes_steps_refused_before_the_data_is_read(c: Ctx):
    # was: said after the data was read, tokenised and the model built
    run = c.folder / "past"
    (run / "checkpoints" / "step-000009").mkdir(parents=True)
    for name, text in [("trainer_state.json", '{"step": 9}'), ("model.safetensors", ""), ("optimizer.pt", "")]:
        (run / "checkpoints" / "step-000009" / name).write_text(text)
    recipe = c.recipe(tasks=c.one_task(c.folder / "not-read.tsv"), output_dir=str(run))
    return train(recipe, "training.resume_from=latest"), f"{recipe}:{line_of(recipe, r'^  steps:')}:", \
        [f"training.steps: 6, but {run / 'checkpoints' / 'step-000009'} is at step 9: set more steps"]


def resume_from_a_checkpoint_whose_state_is_damaged(c: Ctx):
    # was: a JSONDecodeError traceback (a state without a count of steps: test_run_folder)
    folder = c.folder / "damaged" / "step-000003"
    folder.mkdir(parents=True)
    for name, text in [("trainer_state.json", '{"step": 3, "best'), ("model.safetensors", ""), ("optimizer.pt", "")]:
        (folder / name).write_text(text)
    recipe = c.recipe(tasks=c.one_task(c.folder / "not-read.tsv"))
    return train(recipe, f"training.resume_from={folder}"), f"{folder / 'trainer_state.json'}:", \
        ["not a readable checkpoint state (Unterminated string"]


def serve_batch_window_infinite(c: Ctx):
    # inf held every request forever
    return ["serve", str(c.model), "--port", "0", "--batch-window-ms", "inf"], "--batch-window-ms:", \
        ["must be from 0 to 10000 (got inf)"]


CASES = [Case(f.__name__, f) for f in (
    output_dir_that_cannot_be_created, predict_tasks_empty, predict_tasks_with_an_empty_name,
    predict_tasks_ending_with_a_comma,
    predict_a_checkpoint_folder, predict_a_file_as_the_model, push_weights_cut_short,
    predict_config_without_a_tasks_labels, predict_config_whose_tasks_are_a_list, predict_config_without_its_encoder,
    predict_a_model_whose_tokenizer_json_is_damaged, serve_batch_window_infinite,
    predict_a_model_whose_config_has_more_layers_than_its_weights, predict_a_model_whose_weights_lack_an_encoder_weight,
    predict_a_sharded_model_whose_config_has_more_layers_than_its_weights,
    predict_a_model_whose_weights_have_one_it_has_no_place_for, predict_a_model_whose_config_sizes_do_not_fit_its_weights,
    predict_a_model_whose_config_json_nests_too_deeply, predict_a_model_whose_tokenizer_json_nests_too_deeply,
    predict_a_model_whose_tokenizer_has_ids_past_the_encoders_vocabulary, encoder_with_pickled_weights_that_hold_code,
    encoder_whose_weights_have_other_names, encoder_config_with_more_layers_than_its_weights,
    encoder_config_with_fewer_layers_than_its_weights, encoder_config_sizes_do_not_fit_its_weights,
    encoder_without_weights, encoder_weights_cut_short, encoder_hub_id_not_in_the_cache_offline, encoder_that_does_not_load_with_sharing_in_the_recipe,
    encoder_that_is_decoder_only, encoder_decoder_refused_before_the_data_is_read,
    resume_past_the_recipes_steps_refused_before_the_data_is_read, resume_from_a_checkpoint_whose_state_is_damaged,
    evaluate_a_task_the_model_does_not_have, evaluate_a_task_of_another_type_than_the_models_head,
    evaluate_a_split_no_task_has, predict_a_model_of_a_task_type_this_mtnlp_lacks,
    missing_data_file, unreadable_data_file, unknown_format_suffix, missing_column,
    empty_split_header_only, whitespace_only_text, label_unseen_in_train, conll_column_count_mismatch, malformed_conllu_line, non_utf8_bytes,
    invalid_json_line, validation_from_train_leaving_no_training_example, tune_thresholds_without_a_validation_split, lines_count_mismatch, lines_empty_label_line, lines_validation_label_unseen_in_train,
    lines_format_with_a_plain_path, headerless_row_too_short, column_position_with_header_row, unknown_recipe_key,
    wrong_value_type, negative_lr, temperature_zero, empty_task_list,
    duplicate_task_names, unknown_sampler, unknown_metric, unknown_task_type, evaluate_folder_that_is_not_a_model,
    evaluate_base_encoder_instead_of_model, encoder_that_is_a_trained_mtnlp_model, encoder_folder_without_a_config,
    predict_task_the_model_does_not_have, predict_batch_size_zero,
    predict_output_in_a_missing_folder, evaluate_output_in_a_missing_folder, evaluate_override_after_an_option,
    model_folder_missing_under_an_existing_folder,
    predict_with_a_run_folder, predict_input_with_a_lone_surrogate,
    predict_input_with_a_lone_surrogate_in_a_key_it_echoes, predict_input_not_utf8,
    predict_input_of_blank_lines, export_onto_a_file, export_into_the_model_folder,
    damaged_weights_file, weights_left_in_git_lfs, tokenizer_left_in_git_lfs, export_quantize_without_onnx, recipes_copy_into_a_missing_folder,
    recipes_copy_into_a_missing_folder_with_a_slash, recipes_list_with_an_argument)]
BY_ID = {case.id: case for case in CASES}


def run_mtnlp(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtnlp", *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=TIMEOUT, env=dict(os.environ))


def tiny_model(folder: Path, encoder: str) -> Path:
    from transformers import AutoTokenizer

    from mtnlp import MultiTaskModel

    model = MultiTaskModel.from_encoder(encoder, {
        "sentiment": {"type": "classification", "labels": ["0", "1"], "dropout": 0.1},
        "ner": {"type": "tagging", "labels": ["O", "B-PER", "I-PER"], "dropout": 0.1}})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(encoder).save_pretrained(folder)
    return folder


@pytest.fixture
def results(request, make_recipe, tmp_path, tiny_encoder):
    """Run the processes of every selected case (once, in parallel); returns {case id: Case} with .result filled."""
    if not any(case.result for case in CASES):
        selected = [item.callspec.params["case"] for item in request.session.items
                    if getattr(item, "function", None) is test_bad_input]
        model = tiny_model(tmp_path / "model", tiny_encoder)
        jobs = []
        for case_id in dict.fromkeys(selected):
            case = BY_ID[case_id]
            folder = tmp_path / case_id
            folder.mkdir()
            argv, where, fragments = case.setup(Ctx(make_recipe, folder, tiny_encoder, model))
            jobs.append((case, argv, where, fragments, folder))
        with CliSession() as session:
            procs = session.run_many([(argv, folder) for _, argv, _, _, folder in jobs], timeout=TIMEOUT)
        for (case, argv, where, fragments, _), proc in zip(jobs, procs):
            case.result.update(argv=argv, where=where, fragments=fragments, proc=proc)
    return BY_ID


@pytest.mark.parametrize("case", list(BY_ID))
def test_bad_input(results, case):
    r = results[case].result
    proc, where = r["proc"], r["where"]
    context = f"mtnlp {' '.join(r['argv'])}\n--- stdout\n{proc.stdout[-2000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode == 2, context
    assert "Traceback" not in proc.stderr, context
    lines = proc.stderr.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), context  # exactly one line, and it is the error
    message = lines[0][len("error: "):]
    assert message.startswith(where), f"expected the message to start with {where!r}\n{context}"
    for fragment in r["fragments"]:
        assert fragment in message, f"expected {fragment!r} in the message\n{context}"
    assert proc.stdout == "", context  # nothing half-done is reported



@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command_shows_the_traceback(tmp_path, where):
    argv = ["train", str(tmp_path / "absent.yaml")]
    proc = run_mtnlp(["--debug", *argv] if where == "before" else [*argv, "--debug"], tmp_path)
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert proc.stderr.rstrip().endswith(f"mtnlp.errors.UserError: {tmp_path / 'absent.yaml'}: recipe file not found")
