"""Recipes: loading, dotted overrides, and the error (file, line, dotted key) for each kind of mistake."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from conftest import DATA, REPO
from mtnlp.errors import UserError
from mtnlp.recipe import CWD_PATH_KEYS, Recipe, TaskSpec, check_training_paths, load_recipe, resolve_path, to_dict

DEMO = REPO / "recipes" / "demo.yaml"

# A small valid recipe; the comment gives each line's number (used by the error tests).
BASE = textwrap.dedent(f"""\
    name: t
    tasks:
      sentiment:
        type: classification
        data:
          train: {DATA / "sst2_sample.jsonl"}
          text_column: sentence
        metrics: [accuracy]
      ner:
        type: tagging
        data:
          train: {DATA / "ner_sample.conll"}
    sampling:
      strategy: proportional
      temperature: 2.0
    training:
      steps: 5
      lr: 0.001
    """)
LINE = {"sentiment": 3, "metrics": 8, "ner": 9, "strategy": 14, "temperature": 15, "steps": 17, "lr": 18}


def recipe_file(tmp_path, text=BASE, replace=None, name="r.yaml") -> Path:
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error(path, overrides=(), training=False) -> str:
    """The error loading a recipe gives (`training`: or checking what training reads and writes)."""
    with pytest.raises(UserError) as info:
        recipe = load_recipe(path, list(overrides))
        if training:
            check_training_paths(recipe)
    return str(info.value)


def test_base_recipe_lines_are_as_documented(tmp_path):
    lines = BASE.splitlines()
    assert lines[LINE["sentiment"] - 1].strip() == "sentiment:"
    assert lines[LINE["lr"] - 1].strip() == "lr: 0.001"
    assert lines[LINE["steps"] - 1].strip() == "steps: 5"
    recipe = load_recipe(recipe_file(tmp_path))
    assert list(recipe.tasks) == ["sentiment", "ner"] and recipe.training.steps == 5


# ---------------------------------------------------------------- loading and overrides


def test_load_demo():
    recipe = load_recipe(DEMO)
    assert isinstance(recipe, Recipe) and recipe.name == "demo" and recipe.source == str(DEMO)
    assert list(recipe.tasks) == ["sentiment", "question", "pos"]
    assert all(isinstance(t, TaskSpec) for t in recipe.tasks.values())
    assert [t.type for t in recipe.tasks.values()] == ["classification", "classification", "tagging"]
    assert recipe.tasks["sentiment"].data.text_column == "sentence"
    assert recipe.tasks["question"].data.validation_from_train == 0.1
    assert recipe.tasks["pos"].data.tag_column == "upos"
    assert recipe.tasks["pos"].metrics == ["token_accuracy"]
    assert recipe.training.lr == 1e-4 and isinstance(recipe.training.lr, float)
    assert recipe.training.mixed_precision == "auto"
    assert recipe.sampling.strategy == "temperature" and recipe.sampling.temperature == 3.0
    assert recipe.training.head_lr == 1e-3 and recipe.training.steps == 400
    assert recipe.training.weight_decay == 0.01  # a default for a key the recipe leaves out
    assert recipe.model.max_length == 128
    # relative data paths resolve under data_dir, itself relative to the recipe's folder
    for task in recipe.tasks.values():
        assert resolve_path(recipe, task.data.train).is_file()
    assert resolve_path(recipe, "sst2/dev.tsv") == REPO / "recipes" / "data" / "sst2" / "dev.tsv"
    assert "source" not in to_dict(recipe) and to_dict(recipe)["training"]["steps"] == 400


def test_overrides():
    recipe = load_recipe(DEMO, ["training.lr=3e-5", "training.steps=7", "sampling.strategy=uniform",
                                "tasks.sentiment.loss_weight=2"])
    assert recipe.training.lr == 3e-5 and type(recipe.training.lr) is float
    assert recipe.training.steps == 7 and type(recipe.training.steps) is int
    assert recipe.sampling.strategy == "uniform"
    assert recipe.tasks["sentiment"].loss_weight == 2.0 and type(recipe.tasks["sentiment"].loss_weight) is float
    assert recipe.tasks["question"].loss_weight == 1.0  # other tasks untouched
    assert recipe.sampling.temperature == 3.0 and recipe.training.batch_size == 32


def test_override_adds_missing_section_and_lists(tmp_path):
    path = recipe_file(tmp_path)
    recipe = load_recipe(path, ["model.max_length=64", "tasks.ner.metrics=[seqeval]", "training.report_to=tensorboard",
                                "training.max_grad_norm=null"])
    assert recipe.model.max_length == 64
    assert recipe.tasks["ner"].metrics == ["seqeval"]
    assert recipe.training.report_to == ["tensorboard"]
    assert recipe.training.max_grad_norm is None


def test_overrides_as_the_readme_describes_them():
    recipe = load_recipe(DEMO, ['name="123"', "tasks.extra.type=classification", "tasks.extra.data.train=x.csv"])
    assert recipe.name == "123" and recipe.tasks["extra"].data.train == "x.csv"
    assert error(DEMO, ["name=123"]).endswith("name: expected str, got 123 (YAML reads an unquoted 123 as a number: "
                                              "quote it)")


@pytest.mark.parametrize("item,problem", [("tasks.sentiment.data.text_column=[sentence", "expected ',' or ']', but got '<stream end>'"),
                                          ("name=a: b: c", "mapping values are not allowed here"),
                                          ("name=*.jsonl", "expected alphabetic or numeric character, but found '.'")])
def test_an_override_whose_value_is_no_valid_yaml_is_an_error_that_says_how_to_quote_it(item, problem):
    """It was taken for its text: a typo (`[sentence`) went unnoticed."""
    key, _, value = item.partition("=")
    assert error(DEMO, [item]) == (f"override '{item}': the value is no valid YAML ({problem}); to mean that text, "
                                   f"quote it: \"{key}='{value}'\"")
    recipe = load_recipe(DEMO, [f"{key}='{value}'"]) if key == "name" else None
    assert recipe is None or recipe.name == value


@pytest.mark.parametrize("item", ["training.lr", "=3", "training.lr3e-5"])
def test_malformed_override(item):
    assert "key=value" in error(DEMO, [item])


# ---------------------------------------------------------------- unknown keys and wrong types


def test_unknown_key_names_dotted_key_and_line(tmp_path):
    path = recipe_file(tmp_path, replace={"  lr: 0.001": "  lrr: 0.001"})
    message = error(path)
    assert f"{path}:{LINE['lr']}:" in message
    assert "unknown key 'training.lrr'" in message and "lr" in message.split("known:")[1]


def test_unknown_nested_key_in_task(tmp_path):
    path = recipe_file(tmp_path, replace={"      text_column: sentence": "      text_colum: sentence"})
    message = error(path)
    assert f"{path}:7:" in message and "tasks.sentiment.data.text_colum" in message


def test_unknown_top_level_key(tmp_path):
    path = recipe_file(tmp_path, replace={"name: t": "nmae: t"})
    assert f"{path}:1:" in error(path) and "unknown key 'nmae'" in error(path)


def test_unknown_key_via_override():
    message = error(DEMO, ["training.lrr=3e-5"])
    assert "(command-line override)" in message and "unknown key 'training.lrr'" in message


@pytest.mark.parametrize("key,read", [("5", "a number"), ("1.5", "a number"), ("2020-01-01", "a date")])
def test_a_key_yaml_reads_as_no_text_is_an_unknown_key_at_its_line(tmp_path, key, read):
    """It was pydantic's "Keys should be strings", naming neither the key nor (at the top level) the line."""
    message = error(recipe_file(tmp_path, replace={"  lr: 0.001": f"  {key}: 0.001"}))
    assert message.startswith(f"{tmp_path / 'r.yaml'}:{LINE['lr']}: unknown key 'training.{key}' (YAML reads the key "
                              f"{key} as {read}; known: steps, "), message
    message = error(recipe_file(tmp_path, replace={"name: t": f"{key}: t"}))
    assert message.startswith(f"{tmp_path / 'r.yaml'}:1: unknown key '{key}' (YAML reads the key {key} as {read}; "
                              "known: tasks, "), message


@pytest.mark.parametrize("invisible,escaped", [("\ufeff", "\\ufeff"), ("\u200b", "\\u200b")])
def test_an_unknown_key_holding_an_invisible_character_shows_it_escaped(tmp_path, invisible, escaped):
    """A BOM inside the file (two BOM files joined with cat) made `unknown key 'training'`, known: ..., training."""
    message = error(recipe_file(tmp_path, replace={"training:": f"{invisible}training:"}))
    assert f"unknown key '{escaped}training' (known: " in message and invisible not in message
    message = error(recipe_file(tmp_path, replace={"  lr: 0.001": f"  l{invisible}r: 0.001"}))
    assert f"unknown key 'training.l{escaped}r' (known: " in message and invisible not in message
    assert "unknown key 'tasks.sentiment.风格'" in error(DEMO, ["tasks.sentiment.风格=1"])  # visible: as it is
    assert "unknown key 'training.ステップ\\u200b'" in error(DEMO, ["training.ステップ\u200b=1"])  # only what hides


@pytest.mark.parametrize("item,fragment", [("trainig.steps=10", "unknown key 'trainig'"),
                                           ("tasks.extra.type=classification", "missing required key 'tasks.extra.data'")])
def test_section_made_by_an_override_is_blamed_on_the_override(item, fragment):
    message = error(DEMO, [item])
    assert message.startswith(f"{DEMO} (command-line override): ") and fragment in message


def test_wrong_type_names_key_and_line(tmp_path):
    path = recipe_file(tmp_path, replace={"steps: 5": "steps: abc"})
    message = error(path)
    assert f"{path}:{LINE['steps']}:" in message and "training.steps" in message and "int" in message


@pytest.mark.parametrize("item,key", [("training.steps=abc", "training.steps"), ("training.steps=2.5", "training.steps"),
                                      ("training.cpu=yes please", "training.cpu"),
                                      ("training.lr=fast", "training.lr"), ("training.steps=true", "training.steps")])
def test_wrong_type_via_override(item, key):
    message = error(DEMO, [item])
    assert "(command-line override)" in message and f"{key}:" in message and "expected" in message


@pytest.mark.parametrize("value", ["null", "5"])
def test_task_section_that_is_not_a_mapping(tmp_path, value):
    path = recipe_file(tmp_path, replace={"  ner:\n": f"  ner: {value}\n  other:\n"})
    assert error(path) == f"{path}:{LINE['ner']}: tasks.ner: expected a mapping of keys, got {value.replace('null', 'None')}"


def test_missing_required_key(tmp_path):
    path = recipe_file(tmp_path, replace={"    type: tagging\n": ""})
    assert "missing required key 'tasks.ner.type'" in error(path)


def test_invalid_yaml_has_line(tmp_path):
    path = recipe_file(tmp_path, replace={"  steps: 5": "  steps: [5"})
    message = error(path)
    assert message.startswith(f"{path}:") and "invalid YAML" in message


def test_duplicate_task_name(tmp_path):
    duplicate = BASE.replace("  ner:\n", "  sentiment:\n", 1)
    path = recipe_file(tmp_path, duplicate)
    message = error(path)
    assert f"{path}:{LINE['ner']}:" in message and "duplicate key 'tasks.sentiment'" in message


def test_duplicate_training_key(tmp_path):
    path = recipe_file(tmp_path, replace={"  lr: 0.001": "  lr: 0.001\n  steps: 9"})
    message = error(path)
    assert message == f"{path}:{LINE['lr'] + 1}: duplicate key 'training.steps'"


def test_duplicate_key_in_an_override():
    assert error(DEMO, ["training={steps: 3, steps: 4}"]) == \
        "override 'training={steps: 3, steps: 4}': duplicate key 'training.steps'"
    recipe = load_recipe(DEMO, ["training={steps: 3}"])  # a mapping replaces the section: the rest are defaults
    assert recipe.training.steps == 3 and recipe.training.lr == 5e-5
    assert recipe.where("training.steps") == f"{DEMO} (command-line override)"


@pytest.mark.parametrize("overrides,said", [
    (["training.lr=1e-4", "training.lr=2e-4"], "override 'training.lr=2e-4': training.lr was given already "
                                               "('training.lr=1e-4'): give it once"),
    # the section replaced after one of its keys: training.steps=3 was dropped for the default 1000
    (["training.steps=3", "training={lr: 1}"], "override 'training={lr: 1}': training.steps was given already "
                                               "('training.steps=3'): give it once")])
def test_a_key_given_twice_on_the_command_line_is_an_error(overrides, said):
    assert error(DEMO, overrides) == said
    recipe = load_recipe(DEMO, ["training={lr: 1}", "training.steps=3"])  # a section, then a key in it: both hold
    assert (recipe.training.lr, recipe.training.steps) == (1, 3)


@pytest.mark.parametrize("text,line,key", [("tasks:\n  ? [a, b]\n  : 1\n", 2, "tasks: "), ("? {a: 1}\n: 2\n", 1, "")])
def test_complex_key(tmp_path, text, line, key):
    path = recipe_file(tmp_path, text)
    assert error(path).startswith(f"{path}:{line}: {key}a key must be a name or a number, not ")


ALIASED = textwrap.dedent(f"""\
    tasks:
      sent:
        type: classification
        data: &data
          train: {DATA / "sst2_sample.jsonl"}
          validation: {DATA / "sst2_sample.jsonl"}
          text_column: sentence
      sent2:
        type: classification
        data: *data
    """)


def test_override_of_an_aliased_section_changes_that_task_only(tmp_path):
    path = recipe_file(tmp_path, ALIASED)
    recipe = load_recipe(path, ["tasks.sent2.data.text_column=foo", "tasks.sent2.data.validation=null"])
    assert recipe.tasks["sent"].data.text_column == "sentence" and recipe.tasks["sent"].data.validation
    assert recipe.tasks["sent2"].data.text_column == "foo" and recipe.tasks["sent2"].data.validation is None
    assert recipe.where("tasks.sent2.data.train") == f"{path}:5"  # the alias's keys are where its anchor wrote them


def test_merge_keys(tmp_path):
    text = ALIASED.replace("    data: *data\n", "    data:\n      <<: *data\n      text_column: text\n")
    recipe = load_recipe(recipe_file(tmp_path, text))
    assert recipe.tasks["sent2"].data.text_column == "text" and recipe.tasks["sent"].data.text_column == "sentence"
    assert recipe.tasks["sent2"].data.train == recipe.tasks["sent"].data.train
    # a key written twice beside a merge is still a duplicate
    path = recipe_file(tmp_path, text + "      text_column: other\n")
    assert error(path).startswith(f"{path}:13: duplicate key")


def test_merged_mappings_that_set_one_key_differently_and_a_second_merge_key_are_errors(tmp_path):
    """Which merged mapping wins differs between PyYAML versions (6.0.4 the last, earlier the first, as YAML
    says): the same recipe trained with dropout 0.3 on one install and 0.4 on another. A second << in one
    mapping was no duplicate key."""
    base = BASE.replace("    type: classification\n", "    type: classification\n    <<: [{dropout: 0.3, loss_weight: 2.0}, "
                        "{dropout: 0.4}]\n")
    path = recipe_file(tmp_path, base)
    assert error(path) == (f"{path}:5: tasks.sentiment.dropout: set by two of the merged mappings (lines 5 and 5); "
                           "PyYAML versions differ on which wins: set it in this mapping")
    same = recipe_file(tmp_path, base.replace("{dropout: 0.4}", "{dropout: 0.3, metrics: [f1]}"))
    spec = load_recipe(same).tasks["sentiment"]
    assert (spec.dropout, spec.loss_weight, spec.metrics) == (0.3, 2.0, ["accuracy"])  # one value; the task's own key wins
    twice = recipe_file(tmp_path, BASE.replace("    type: classification\n", "    type: classification\n"
                                               "    <<: {dropout: 0.3}\n    <<: {dropout: 0.4}\n"))
    assert error(twice) == (f"{twice}:6: duplicate key 'tasks.sentiment.<<': merge several mappings with one, "
                            "<<: [*a, *b]")


@pytest.mark.parametrize("written,said", [
    ("steps: !!int 1e3", "invalid YAML: int '1e3' cannot be read as its tag says (ValueError)"),
    ("steps: !!bool maybe", "invalid YAML: bool 'maybe' cannot be read as its tag says (KeyError)"),
    ("steps: !!float ''", "invalid YAML: float '' cannot be read as its tag says (IndexError)")])
def test_a_value_its_explicit_tag_cannot_read_is_an_error_at_its_line(tmp_path, written, said):
    """PyYAML's constructors raise ValueError, KeyError... (no YAMLError): a traceback."""
    path = recipe_file(tmp_path, replace={"  steps: 5": f"  {written}"})
    assert error(path) == f"{path}:{LINE['steps']}: {said}"
    assert "cannot be read as its tag says" in error(recipe_file(tmp_path), [f"training.{written.replace(': ', '=')}"])


def test_yaml_nested_too_deep_to_read_is_one_line(tmp_path):
    path = recipe_file(tmp_path, replace={"name: t": "name: " + "[" * 2000 + "]" * 2000})
    assert error(path) == f"{path}: the YAML nests deeper than it can be read"
    assert error(recipe_file(tmp_path), ["name=" + "[" * 2000 + "]" * 2000]).endswith(
        ": the YAML nests deeper than it can be read")


@pytest.mark.parametrize("item,dropped", [("output_dir=runs/exp #2", "#2"), ("name=run #3", "#3"),
                                          ("training.lr=1e-5 # the paper's", "# the paper's"), ("name=[a] #x", "#x")])
def test_an_override_value_with_a_yaml_comment_is_refused_not_cut(item, dropped):
    """`output_dir=runs/exp #2` wrote into runs/exp, perhaps over another run (YAML drops a comment)."""
    key, _, value = item.partition("=")
    quoted = value.replace("'", "''")
    assert error(DEMO, [item]) == (f"override '{item}': YAML reads '{dropped}' as a comment and drops it; to mean "
                                   f"that text, quote it: \"{key}='{quoted}'\"")
    assert load_recipe(DEMO, ["name='run #3'", "output_dir=runs/exp#2"]).name == "run #3"
    # a value that is only a comment was "name: expected str, got None"
    assert error(DEMO, ["name=#3"]) == "override 'name=#3': YAML reads '#3' as a comment and drops it; to mean " \
                                       "that text, quote it: \"name='#3'\""


# ---------------------------------------------------------------- values out of range


@pytest.mark.parametrize("item,key", [
    ("training.lr=-1e-5", "training.lr"),
    ("training.lr=0", "training.lr"),
    ("training.steps=0", "training.steps"),
    ("training.batch_size=-4", "training.batch_size"),
    ("training.warmup=1.5", "training.warmup"),
    ("training.eval_every=0", "training.eval_every"),
    ("sampling.temperature=0", "sampling.temperature"),
    ("sampling.temperature=-1", "sampling.temperature"),
    ("tasks.sentiment.loss_weight=-1", "tasks.sentiment.loss_weight"),
    ("tasks.sentiment.dropout=1", "tasks.sentiment.dropout"),
    ("tasks.question.data.validation_from_train=1.5", "tasks.question.data.validation_from_train"),
    ("tasks.question.data.validation_from_train=1", "tasks.question.data.validation_from_train"),
    ("tasks.question.data.validation_from_train=0", "tasks.question.data.validation_from_train"),
    ("model.max_length=4", "model.max_length"),
    # past what the tokenizer (2^64) or Python's timedelta (8.6e13 s) can hold: an OverflowError traceback
    ("model.max_length=100000000000000000000", "model.max_length"),
    ("training.ddp_timeout=100000000000000000000", "training.ddp_timeout"),
    ("training.ddp_timeout=0", "training.ddp_timeout"),
])
def test_out_of_range(item, key):
    message = error(DEMO, [item])
    assert str(DEMO) in message and f"{key}:" in message


@pytest.mark.parametrize("item, said", [
    ("training.warmup=100", "training.warmup: must be < 1, got 100: a fraction of training.steps (0.1: the first 10%)"),
    ("training.max_grad_norm=0", "training.max_grad_norm: must be > 0, got 0 (null: no clipping)")])
def test_a_trainer_users_value_out_of_range_says_what_the_key_takes(item, said):
    """The Trainer's warmup_steps=100 and max_grad_norm=0 (no clipping) read as mistakes without a word why."""
    assert error(DEMO, [item]).endswith(said)


def test_negative_lr_in_file(tmp_path):
    path = recipe_file(tmp_path, replace={"lr: 0.001": "lr: -0.001"})
    message = error(path)
    assert str(path) in message and "training.lr" in message and "> 0" in message


@pytest.mark.parametrize("item,key", [("training.lr=.nan", "training.lr"),
                                      ("sampling.temperature=.nan", "sampling.temperature"),
                                      ("training.weight_decay=.nan", "training.weight_decay"),
                                      ("tasks.sentiment.loss_weight=.nan", "tasks.sentiment.loss_weight")])
def test_nan_is_out_of_range(item, key):
    # NaN compares False with everything, so `value <= 0` / `value < 0` let it through; training then runs on NaN.
    message = error(DEMO, [item])
    assert f"{key}:" in message


@pytest.mark.parametrize("key,value,sharing", [("lora_r", "4", "lora"), ("lora_alpha", "8", "lora"),
                                               ("lora_dropout", "0.2", "lora"), ("lora_targets", "[query]", "lora"),
                                               ("task_layers", "1", "task_layers")])
def test_a_sharing_key_the_sharing_method_does_not_read_is_an_error(tmp_path, key, value, sharing):
    other = "task_layers" if sharing == "lora" else "lora"
    path = recipe_file(tmp_path, BASE + f"mtl:\n  sharing: {other}\n  {key}: {value}\n")
    assert error(path) == f"{path}:21: mtl.{key}: applies to sharing: {sharing} (mtl.sharing is {other})"
    assert error(DEMO, [f"mtl.{key}={value}"]).endswith(f"mtl.{key}: applies to sharing: {sharing} "
                                                        "(mtl.sharing is hard)")
    # its default is no choice (a run's recipe.yaml lists every key), and with its method any value is one
    default = {"lora_r": "8", "lora_alpha": "16", "lora_dropout": "0.1", "lora_targets": "[query, key, value, dense]",
               "task_layers": "2"}[key]
    load_recipe(path, [f"mtl.{key}={default}"])
    load_recipe(path, [f"mtl.sharing={sharing}"])


@pytest.mark.parametrize("overrides,key,said", [
    (["sampling.strategy=uniform"], "sampling.temperature", "it applies to sampling.strategy temperature (this is uniform)"),
    (["mtl.gradient=pcgrad"], "sampling.temperature", "mtl.gradient pcgrad trains every task in each update"),
    (["mtl.gradient=cagrad"], "sampling.temperature", "mtl.gradient cagrad trains every task in each update"),
    (["mtl.gradient=pcgrad", "sampling.strategy=uniform"], "sampling.temperature",
     "mtl.gradient pcgrad trains every task in each update"),  # once, for the reason that covers both
    (["mtl.gradient=pcgrad", "mtl.cagrad_c=0.2"], "mtl.cagrad_c", "it applies to mtl.gradient cagrad (this is pcgrad)"),
    (["mtl.dwa_window=3"], "mtl.dwa_window", "it applies to mtl.weighting dwa (this is static)"),
    (["mtl.weighting=dwa", "mtl.weighting_lr=0.1"], "mtl.weighting_lr", "it applies to mtl.weighting uncertainty (this is dwa)"),
    (["training.early_stopping_patience=2", "training.eval_every=null"], "training.early_stopping_patience",
     "early stopping compares evaluations during training: set training.eval_every below training.steps"),
    (["training.early_stopping_patience=2", "training.eval_every=400"], "training.early_stopping_patience",
     "early stopping compares evaluations during training: set training.eval_every below training.steps"),
    (["hub_private=true"], "hub_private", "nothing is pushed: set push_to_hub"),
    (["training.batch_tokens=4096", "training.batch_size=16"], "training.batch_size",
     "training.batch_tokens sets how many examples a training batch holds (evaluation batches: "
     "training.eval_batch_size)"),
])
def test_a_method_option_the_chosen_method_does_not_read_is_said(overrides, key, said):
    """Not an error: `sampling.strategy=uniform` on the command line must not need the file's temperature removed."""
    with pytest.warns(UserWarning) as caught:
        load_recipe(DEMO, overrides)
    messages = [str(w.message) for w in caught]
    assert [m for m in messages if f": {key}: not read: " in m] == [m for m in messages if key in m]
    assert [m.split(": not read: ")[1] for m in messages if f": {key}: not read: " in m] == [said], messages


STREAMED_AND_MULTILABEL = """
model: {encoder: bert-base-uncased, max_length: 64}
tasks:
  reviews: {type: classification, data: {hub: some/reviews, train: train, streaming: true, size: 1000,
                                         label_names: {0: neg, 1: pos}}}
  emotions: {type: multilabel, data: {hub: some/emotions, train: train, streaming: true, size: 500,
                                      label_names: {0: joy, 1: anger}}}
"""


@pytest.mark.parametrize("overrides,key,said", [
    (["training.batch_tokens=2048"], "training.batch_tokens",
     "every task is streamed, and a streamed task's batches hold training.batch_size examples"),
    (["sampling.group_by_length=false"], "sampling.group_by_length",
     "every task is streamed (its batches come in the stream's order)"),
    (["tasks.emotions.threshold_grid=[0.1, 0.2]"], "tasks.emotions.threshold_grid",
     "it is the grid tune_thresholds picks each label's threshold from (tune_thresholds is false)"),
])
def test_a_key_the_recipes_data_or_type_keys_leave_unread_is_said(tmp_path, overrides, key, said):
    """All three did nothing without a word (keyeffects walk); README promises a warning for such a key."""
    with pytest.warns(UserWarning) as caught:
        load_recipe(recipe_file(tmp_path, STREAMED_AND_MULTILABEL), overrides)
    assert [str(w.message).split(": not read: ")[1] for w in caught if f": {key}: not read: " in str(w.message)] == [said]


def test_keys_their_tasks_read_are_not_said_to_be_unread(tmp_path, recwarn):
    """A tuned grid, a multi-label task at its default grid, and a streamed task beside a file task (the file task
    reads batch_tokens, the streamed one batch_size)."""
    path = recipe_file(tmp_path, STREAMED_AND_MULTILABEL)
    load_recipe(path)
    load_recipe(path, ["tasks.emotions.data.streaming=false", "tasks.emotions.data.size=null",
                       "tasks.emotions.tune_thresholds=true", "tasks.emotions.threshold_grid=[0.2, 0.4]",
                       "tasks.emotions.data.validation=validation"])
    load_recipe(path, ["tasks.emotions.data.streaming=false", "tasks.emotions.data.size=null",
                       "training.batch_tokens=2048", "training.batch_size=8", "sampling.group_by_length=false"])
    assert not [str(w.message) for w in recwarn if "not read" in str(w.message)]


def test_an_empty_lora_targets_list_is_refused_as_the_recipe_is_read():
    assert error(DEMO, ["mtl.sharing=lora", "mtl.lora_targets=[]"]).endswith(
        "mtl.lora_targets: List should have at least 1 item after validation, not 0")


def test_method_options_read_by_their_method_are_not_said(recwarn):
    load_recipe(DEMO)  # temperature 3 with the temperature strategy
    load_recipe(DEMO, ["mtl.weighting=dwa", "mtl.dwa_window=3", "mtl.dwa_temperature=1"])
    load_recipe(DEMO, ["mtl.weighting=uncertainty", "mtl.weighting_lr=0.1"])
    load_recipe(DEMO, ["mtl.gradient=pcgrad", "sampling.temperature=2.0", "sampling.group_by_length=false"])
    load_recipe(DEMO, ["mtl.gradient=cagrad", "mtl.cagrad_c=0.2", "sampling.temperature=2.0"])
    assert not [w for w in recwarn if "not read" in str(w.message)]


def test_a_strategy_added_by_a_script_may_read_temperature(monkeypatch, recwarn):
    from mtnlp import sampling

    monkeypatch.setitem(sampling.STRATEGIES, "mine", lambda sizes, progress, temperature=2.0, **options: sizes)
    load_recipe(DEMO, ["sampling.strategy=mine"])
    assert not [w for w in recwarn if "not read" in str(w.message)]


def test_a_method_of_mtnlps_under_a_second_name_reads_its_keys(monkeypatch, recwarn):
    """A script's alias (e.g. an older recipe's name kept working) is the method it names: its keys are read."""
    from mtnlp import sampling, weighting

    monkeypatch.setitem(sampling.STRATEGIES, "tempered", sampling.STRATEGIES["temperature"])
    monkeypatch.setitem(weighting.WEIGHTINGS, "dwa_fast", weighting.WEIGHTINGS["dwa"])
    load_recipe(DEMO, ["sampling.strategy=tempered", "mtl.weighting=dwa_fast", "mtl.dwa_window=2"])
    assert not [w for w in recwarn if "not read" in str(w.message)]
    with pytest.warns(UserWarning, match=r"mtl.weighting_lr: not read: it applies to mtl.weighting uncertainty "
                                         r"\(this is dwa_fast\)"):  # another method's key is still said
        load_recipe(DEMO, ["mtl.weighting=dwa_fast", "mtl.weighting_lr=0.1"])


def test_every_loss_weight_zero_is_an_error():
    message = error(DEMO, ["tasks.sentiment.loss_weight=0", "tasks.question.loss_weight=0", "tasks.pos.loss_weight=0"])
    assert message.endswith("tasks.sentiment.loss_weight: every task's loss_weight is 0: nothing would train")
    load_recipe(DEMO, ["tasks.sentiment.loss_weight=0", "tasks.question.loss_weight=0"])  # one task still trains


def test_an_override_of_a_task_the_recipe_lacks_names_the_recipes_tasks(tmp_path):
    assert error(DEMO, ["tasks.sentimnet.loss_weight=2"]) == (
        f"{DEMO} (command-line override): missing required key 'tasks.sentimnet.type' "
        "(a new task? the recipe's tasks: sentiment, question, pos)")
    path = recipe_file(tmp_path, replace={"sampling:\n": "  other:\n    loss_weight: 2\nsampling:\n"})  # in the file
    assert error(path).endswith("missing required key 'tasks.other.type'")


def test_empty_tasks(tmp_path):
    assert "tasks: at least one task" in error(DEMO, ["tasks={}"])
    path = recipe_file(tmp_path, "name: t\ntasks: {}\n")
    assert "at least one task" in error(path)


def test_unknown_sampler(tmp_path):
    path = recipe_file(tmp_path, replace={"strategy: proportional": "strategy: annealing"})
    message = error(path)
    assert f"{path}:{LINE['strategy']}:" in message and "sampling.strategy" in message
    assert "'annealing'" in message and "round_robin" in message
    assert "sampling.strategy" in error(DEMO, ["sampling.strategy=random"])


def test_unknown_task_type(tmp_path):
    path = recipe_file(tmp_path, replace={"type: tagging": "type: ner"})
    assert "tasks.ner.type" in error(path) and "'ner'" in error(path)


def test_unknown_metric(tmp_path):
    path = recipe_file(tmp_path, replace={"metrics: [accuracy]": "metrics: [accuracy, bleu]"})
    message = error(path)
    assert "tasks.sentiment.metrics" in message and "unknown metric 'bleu'" in message


@pytest.mark.parametrize("task,metric,kind", [("sentiment", "seqeval", "classification"),
                                              ("ner", "accuracy", "tagging"), ("ner", "pearsonr", "tagging")])
def test_metric_not_for_task_type(tmp_path, task, metric, kind):
    message = error(recipe_file(tmp_path), [f"tasks.{task}.metrics=[{metric}]"])
    assert f"tasks.{task}.metrics" in message and f"'{metric}' does not apply to a {kind} task" in message


def test_empty_metric_list(tmp_path):
    assert "at least one metric" in error(recipe_file(tmp_path), ["tasks.ner.metrics=[]"])


def test_validation_and_validation_from_train_exclusive():
    message = error(DEMO, ["tasks.sentiment.data.validation_from_train=0.1"])
    assert "tasks.sentiment.data.validation_from_train" in message and "either" in message


def test_missing_train_split(tmp_path):
    text = BASE.replace(f"      train: {DATA / 'ner_sample.conll'}\n", "      validation: x.conll\n")
    assert "tasks.ner.data.train" in error(recipe_file(tmp_path, text))


# ---------------------------------------------------------------- paths typed on the command line


def test_data_dir_override_is_relative_to_cwd(tmp_path, monkeypatch):
    assert "data_dir" in CWD_PATH_KEYS
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(DEMO, ["data_dir=mydata"])
    assert Path(recipe.data_dir) == tmp_path / "mydata"
    assert resolve_path(recipe, "sst2/train.tsv") == tmp_path / "mydata" / "sst2" / "train.tsv"
    # the same key in the recipe file stays relative to the recipe's folder, whatever the cwd
    plain = load_recipe(DEMO)
    assert plain.data_dir == "data"
    assert resolve_path(plain, "sst2/train.tsv").resolve() == REPO / "recipes" / "data" / "sst2" / "train.tsv"
    # absolute data paths are used as they are
    assert resolve_path(recipe, str(DATA / "trec_sample.csv")) == DATA / "trec_sample.csv"


def test_other_cwd_path_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(DEMO, ["output_dir=out/run1", "training.resume_from=ckpt/step-10"])
    assert Path(recipe.output_dir) == tmp_path / "out" / "run1"
    assert Path(recipe.training.resume_from) == tmp_path / "ckpt" / "step-10"
    assert load_recipe(DEMO, ["training.resume_from=latest"]).training.resume_from == "latest"
    # a path key outside CWD_PATH_KEYS is taken literally
    assert load_recipe(DEMO, ["tasks.sentiment.data.train=x/y.tsv"]).tasks["sentiment"].data.train == "x/y.tsv"


def test_local_hub_folder_resolves_like_data_files(tmp_path, monkeypatch):
    (tmp_path / "ds" / "cl").mkdir(parents=True)
    (tmp_path / "recipes").mkdir()
    path = recipe_file(tmp_path, "tasks:\n  t:\n    type: classification\n    data: {hub: ../ds/cl, train: train}\n"
                                 "  u:\n    type: classification\n    data: {hub: org/name, train: train}\n",
                       name="recipes/r.yaml")
    monkeypatch.chdir(tmp_path)  # ../ds/cl is not here: the recipe's folder decides
    recipe = load_recipe(tmp_path / "recipes" / "r.yaml")
    assert Path(recipe.tasks["t"].data.hub).resolve() == tmp_path / "ds" / "cl"
    assert recipe.tasks["u"].data.hub == "org/name"  # a hub id stays a hub id
    assert load_recipe(path, ["data_dir=../elsewhere"]).tasks["t"].data.hub == "../ds/cl"  # not there: as given


def test_init_from_override_keeps_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # as in a recipe file: org/name is a hub id unless org is a local folder
    assert load_recipe(DEMO, ["model.init_from=org/tiny-mt"]).model.init_from == "org/tiny-mt"
    (tmp_path / "runs").mkdir()
    assert load_recipe(DEMO, ["model.init_from=runs/demo"]).model.init_from == str(tmp_path / "runs" / "demo")
    assert load_recipe(DEMO, ["model.init_from=./demo"]).model.init_from == str(tmp_path / "demo")
    assert load_recipe(DEMO, ["model.encoder=org/encoder"]).model.encoder == "org/encoder"


def test_missing_recipe_file(tmp_path):
    message = error(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in message and "not found" in message


def test_recipe_not_a_mapping(tmp_path):
    assert "YAML mapping" in error(recipe_file(tmp_path, "- a\n- b\n"))


def test_unknown_key_line_in_demo_recipe(tmp_path):
    # an unknown key inside the demo recipe: the reported line is where that key is written
    text = DEMO.read_text(encoding="utf-8").replace("  eval_every: 200", "  eval_evry: 200")
    path = recipe_file(tmp_path, text, name="demo.yaml")
    expected = next(i for i, line in enumerate(text.splitlines(), 1) if "eval_evry" in line)
    message = error(path)
    assert re.search(rf"{re.escape(str(path))}:{expected}: unknown key 'training.eval_evry'", message), message


# ---------------------------------------------------------------- data: format lines, header and column positions

# line numbers: data 4, format 5, train 6, validation 7, header 8
LINES = textwrap.dedent("""\
    tasks:
      emotion:
        type: classification
        data:
          format: lines
          train: {text: emo/train_text.txt, labels: emo/train_labels.txt}
          validation: {text: emo/val_text.txt, labels: emo/val_labels.txt, text_pair: emo/val_pair.txt}
    """)
# line numbers: header 6, text_column 7, text_pair_column 8, label_column 9
HEADERLESS = textwrap.dedent("""\
    tasks:
      sts:
        type: regression
        data:
          train: sts-train.csv
          header: false
          text_column: 5
          text_pair_column: 6
          label_column: 4
          format: tsv
    """)


def test_lines_mapping(tmp_path):
    recipe = load_recipe(recipe_file(tmp_path, LINES))
    data = recipe.tasks["emotion"].data
    assert data.format == "lines"
    assert data.train == {"text": "emo/train_text.txt", "labels": "emo/train_labels.txt"}
    assert data.validation["text_pair"] == "emo/val_pair.txt"
    # the mapping implies the format
    implied = load_recipe(recipe_file(tmp_path, LINES, replace={"      format: lines\n": ""}))
    assert implied.tasks["emotion"].data.format is None and implied.tasks["emotion"].data.train["labels"]
    assert to_dict(implied)["tasks"]["emotion"]["data"]["train"]["text"] == "emo/train_text.txt"


def test_plain_path_with_format_lines(tmp_path):
    path = recipe_file(tmp_path, "tasks:\n  t:\n    type: regression\n    data:\n      train: a.txt\n      format: lines\n")
    message = error(path)
    assert message.startswith(f"{path}:5: tasks.t.data.train:") and "data.format is lines" in message


def test_quoted_and_header_are_read_for_csv_and_tsv_files_and_those_of_no_known_suffix(tmp_path):
    for train in ("sts-train.csv", "sts.TSV", "sts.tsv.gz", "sts.data"):  # an unknown suffix: said when it is read
        recipe = load_recipe(recipe_file(tmp_path, HEADERLESS, replace={"      format: tsv\n": "      quoted: true\n",
                                                                        "sts-train.csv": train}))
        assert recipe.tasks["sts"].data.quoted is True and recipe.tasks["sts"].data.header is False


def test_headerless_positions(tmp_path):
    data = load_recipe(recipe_file(tmp_path, HEADERLESS)).tasks["sts"].data
    assert data.header is False
    assert (data.text_column, data.text_pair_column, data.label_column) == (5, 6, 4)
    assert all(type(v) is int for v in (data.text_column, data.text_pair_column, data.label_column))
    # YAML's no is false; names stay names with a header row (the default)
    assert load_recipe(recipe_file(tmp_path, HEADERLESS, replace={"header: false": "header: no"})
                       ).tasks["sts"].data.header is False
    assert load_recipe(recipe_file(tmp_path, BASE)).tasks["sentiment"].data.header is True
    over = load_recipe(recipe_file(tmp_path, HEADERLESS), ["tasks.sts.data.label_column=3"])
    assert over.tasks["sts"].data.label_column == 3


@pytest.mark.parametrize("base,replace,line,key,fragment", [
    (LINES, {"validation: {text: emo/val_text.txt, labels: emo/val_labels.txt, text_pair: emo/val_pair.txt}":
      "validation: emo/val.tsv"}, 7, "tasks.emotion.data.validation", "not a single path"),
    (LINES, {"format: lines": "format: csv"}, 6, "tasks.emotion.data.train", "data.format is csv"),
    (LINES, {"labels: emo/train_labels.txt}": "label: emo/train_labels.txt}"}, 6, "tasks.emotion.data.train.label",
     "unknown key (expected: text, labels, text_pair)"),
    (LINES, {", labels: emo/train_labels.txt}": "}"}, 6, "tasks.emotion.data.train", "missing 'labels'"),
    (LINES, {"type: classification": "type: tagging"}, 6, "tasks.emotion.data.train", "text data"),
    (LINES, {"format: lines": "format: lines\n      text_column: sentence"}, 6, "tasks.emotion.data.text_column",
     "does not apply to format lines"),
    (LINES, {"format: lines": "format: lines\n      hub: glue"}, 7, "tasks.emotion.data.train", "hub"),
    (LINES, {"format: lines": "format: lines\n      quoted: true"}, 6, "tasks.emotion.data.quoted",
     "does not apply to format lines"),  # (was read by no reader: silently)
    (HEADERLESS, {"header: false": "header: true"}, 7, "tasks.sts.data.text_column", "needs data.header: false"),
    (HEADERLESS, {"label_column: 4": "label_column: score"}, 9, "tasks.sts.data.label_column", "not the name 'score'"),
    (HEADERLESS, {"      label_column: 4\n": ""}, 6, "tasks.sts.data.header", "label_column as a 0-based column position"),
    (HEADERLESS, {"text_pair_column: 6": "text_pair_column: -1"}, 8, "tasks.sts.data.text_pair_column", ">= 0"),
    (HEADERLESS, {"format: tsv": "format: jsonl"}, 6, "tasks.sts.data.header", "csv and tsv files, not jsonl"),
    (HEADERLESS, {"type: regression": "type: tagging"}, 7, "tasks.sts.data.text_column", "does not apply to tagging"),
    (HEADERLESS, {"header: false": "header: maybe"}, 6, "tasks.sts.data.header", "expected bool"),
    (HEADERLESS, {"format: tsv": "hub: glue\n      encoding: latin-1", "header: false": "header: true",
                  "text_column: 5": "text_column: a", "text_pair_column: 6": "text_pair_column: b",
                  "label_column: 4": "label_column: c"}, 11, "tasks.sts.data.encoding", "not a hub dataset"),
    (HEADERLESS, {"format: tsv": "config: sst2", "header: false": "header: true", "text_column: 5": "text_column: a",
                  "text_pair_column: 6": "text_pair_column: b", "label_column: 4": "label_column: c"},
     10, "tasks.sts.data.config", "set data.hub too"),
    (HEADERLESS, {"format: tsv": "shuffle_buffer: 100", "header: false": "header: true",
                  "text_column: 5": "text_column: a", "text_pair_column: 6": "text_pair_column: b",
                  "label_column: 4": "label_column: c"}, 10, "tasks.sts.data.shuffle_buffer", "data.streaming: true"),
    (HEADERLESS, {"format: tsv": "format: json\n      quoted: true", "header: false": "header: true",
                  "text_column: 5": "text_column: a", "text_pair_column: 6": "text_pair_column: b",
                  "label_column: 4": "label_column: c"}, 11, "tasks.sts.data.quoted", "csv and tsv files, not json"),
    (HEADERLESS, {"format: tsv": "hub: glue\n      quoted: false", "header: false": "header: true",
                  "text_column: 5": "text_column: a", "text_pair_column: 6": "text_pair_column: b",
                  "label_column: 4": "label_column: c"}, 11, "tasks.sts.data.quoted", "not a hub dataset"),
    # the format a file's suffix names, as data.format's (was said when the file was read, naming the file alone)
    (HEADERLESS, {"      format: tsv\n": "", "sts-train.csv": "sts-train.csv\n      validation: sts-dev.JSONL"}, 7,
     "tasks.sts.data.header", "csv and tsv files, not jsonl (sts-dev.JSONL)"),
    (HEADERLESS, {"      format: tsv\n": "", "sts-train.csv": "sts-train.txt"}, 6, "tasks.sts.data.header",
     "csv and tsv files, not conll (sts-train.txt)"),
    (HEADERLESS, {"format: tsv": "quoted: true", "sts-train.csv": "sts.json", "header: false": "header: true",
                  "text_column: 5": "text_column: a", "text_pair_column: 6": "text_pair_column: b",
                  "label_column: 4": "label_column: c"}, 10, "tasks.sts.data.quoted", "not json (sts.json)"),
])
def test_data_section_recipe_errors(tmp_path, base, replace, line, key, fragment):
    """The lines format's file mappings and headerless files' column positions: file:line: key."""
    path = recipe_file(tmp_path, base, replace=replace)
    message = error(path)
    assert message.startswith(f"{path}:{line}: {key}:"), message
    assert fragment in message, message


@pytest.mark.parametrize("names,fragment", [
    ("{yes: positive, no: negative}", "YAML reads the key yes as true: quote it"),
    ("{1: yes, 0: negative}", "the name true is a boolean"),
    ("{0: neg, '0': pos}", "the keys 0 and '0' are the same label '0'"),
])
def test_label_names_booleans_and_colliding_keys(tmp_path, names, fragment):
    path = recipe_file(tmp_path, replace={"      text_column: sentence": f"      text_column: sentence\n"
                                                                        f"      label_names: {names}"})
    message = error(path)
    assert message.startswith(f"{path}:8: tasks.sentiment.data.label_names") and fragment in message, message
    quoted = recipe_file(tmp_path, replace={"      text_column: sentence": "      text_column: sentence\n"
                                                                          "      label_names: {'yes': positive, 0: 'no'}"})
    assert load_recipe(quoted).tasks["sentiment"].data.label_names == {"yes": "positive", "0": "no"}


def test_column_position_with_a_header_row_via_override(tmp_path):
    message = error(recipe_file(tmp_path), ["tasks.sentiment.data.text_column=0"])
    assert "(command-line override)" in message and "tasks.sentiment.data.text_column" in message
    assert "header: false" in message


@pytest.mark.parametrize("written", ["no", "off", "false"])
def test_yaml_no_like_mixed_precision_needs_no_quotes(tmp_path, written):
    path = recipe_file(tmp_path, replace={"  lr: 0.001": f"  lr: 0.001\n  mixed_precision: {written}"})
    assert load_recipe(path).training.mixed_precision == "fp32"


def test_the_recorded_recipe_finds_the_data_from_the_run_directory(tmp_path):
    """The run's recipe.yaml lives elsewhere than the recipe: its relative data paths still resolve."""
    from mtnlp.precision import resolve
    from mtnlp.report import start_run

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "train.tsv").write_text("text\tlabel\na\tx\nb\ty\n")
    path = project / "recipe.yaml"
    path.write_text(textwrap.dedent("""\
        data_dir: data
        model: {encoder: x}
        tasks:
          t: {type: classification, data: {train: train.tsv}}
        """))
    recipe = load_recipe(path)
    start_run(tmp_path / "run", recipe, resolve("fp32", "cpu"))
    recorded = load_recipe(tmp_path / "run" / "recipe.yaml")
    assert resolve_path(recorded, recorded.tasks["t"].data.train) == (project / "data" / "train.tsv").resolve()


@pytest.mark.parametrize("task_type, key, value, message", [
    ("tagging", "label_column", "xpos", "does not apply to tagging, which reads token_column and tag_column"),
    ("tagging", "text_column", "words", "does not apply to tagging"),
    ("classification", "tag_column", 3, "applies to tagging tasks only"),
    ("regression", "token_column", 0, "applies to tagging tasks only"),
])
def test_data_keys_another_task_type_reads_are_errors(tmp_path, task_type, key, value, message):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(f"""\
        model: {{encoder: x}}
        tasks:
          t:
            type: {task_type}
            data:
              train: a.tsv
              {key}: {value}
        """))
    with pytest.raises(UserError, match=re.escape(f"r.yaml:7: tasks.t.data.{key}: {message}")):
        load_recipe(path)


def test_a_resolved_tagging_recipe_reloads(tmp_path):
    """to_dict lists every key with its default (text_column: text): the record of a run must load."""
    import yaml

    path = tmp_path / "r.yaml"
    path.write_text("model: {encoder: x}\ntasks:\n  pos: {type: tagging, data: {train: a.conllu}}\n")
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(yaml.safe_dump(to_dict(load_recipe(path))))
    assert load_recipe(resolved).tasks["pos"].data.text_column == "text"


@pytest.mark.parametrize("top, message", [
    ("push_to_hub: true\n", "hub_repo_id: push_to_hub needs hub_repo_id"),
    ("push_to_hub: true\nhub_repo_id: a/b/c\n", "hub_repo_id: repo id 'a/b/c' is not valid"),
    ("hub_repo_id: not a repo\n", "hub_repo_id: repo id 'not a repo' is not valid"),
])
def test_hub_repo_id_is_checked_when_the_recipe_loads(tmp_path, top, message):
    """Not after the whole training run, when the push would fail."""
    path = tmp_path / "r.yaml"
    path.write_text(top + "model: {encoder: x}\ntasks:\n  t: {type: classification, data: {train: a.tsv}}\n")
    with pytest.raises(UserError, match=re.escape(message)):
        load_recipe(path)


@pytest.mark.parametrize("key", ["model.encoder", "model.init_from"])
def test_a_hub_pages_address_as_the_encoder_or_transfer_source_says_which_id_it_means(tmp_path, key):
    from mtnlp.transfer import trained_source

    recipe = load_recipe(recipe_file(tmp_path), [f"{key}=https://huggingface.co/org/x", f"output_dir={tmp_path / 'r'}"])
    with pytest.raises(UserError, match=f"{key}: https://huggingface.co/org/x: a hub page's address, not a model id: "
                                        "give the id org/x$"):
        check_training_paths(recipe) if key == "model.encoder" else trained_source(recipe)


@pytest.mark.parametrize("written,fragment", [
    ("steps: 010", "010 is an octal number to YAML: for the number write 10, without leading zeros; for a text quote "
                   "it ('010')"), ("steps: 1:30", "1:30 is a base-60 number to YAML: quote it"),
    ("lr: 1:30.5", "1:30.5 is a base-60 number"), ("seed: -1", "must be >= 0"), ("seed: 4294967296", "must be < 4294967296"),
    ("mixed_precision: on", "names no precision (expected one of: auto, bf16, fp16, fp32, no)"),
])
def test_numbers_yaml_would_change_and_seeds_numpy_refuses(tmp_path, written, fragment):
    """YAML 1.1 reads 010 as 8 and 1:30 as 90; a seed must fit numpy's 32 bits (else a traceback after the
    data is read)."""
    key = written.split(":")[0]
    line = {"steps": "  steps: 5", "lr": "  lr: 0.001"}.get(key)
    path = recipe_file(tmp_path, replace={line: f"  {written}"} if line else {"  lr: 0.001": f"  lr: 0.001\n  {written}"})
    message = error(path)
    assert message.startswith(f"{path}:{LINE.get(key, LINE['lr'] + 1)}: training.{key}: ") and fragment in message, message
    said = error(recipe_file(tmp_path), [f"training.{written.replace(': ', '=')}"])
    assert f"training.{key}" in said and fragment in said, said
    assert load_recipe(recipe_file(tmp_path), ["training.steps=10", "training.lr=0x10"]).training.steps == 10


@pytest.mark.parametrize("name", ["a.b", "''", "'x,y'", "'two words'", "a=b", 'a"b', "'a\\'", '"a\\bc"', '"a\\x7f"'])
def test_a_task_name_torch_or_the_tasks_option_cannot_take_is_refused(tmp_path, name):
    message = error(recipe_file(tmp_path, replace={"  ner:": f"  {name}:"}))
    assert message.startswith(f"{tmp_path / 'r.yaml'}:{LINE['ner']}: ") and "a task name is not empty" in message
    assert message.isprintable(), message  # a backspace in a name (YAML's "a\bc") is shown escaped
    if name in ('a"b', "'a\\'"):  # an older mtnlp allowed them: a model it saved is still evaluated
        evaluation = load_recipe(recipe_file(tmp_path, replace={"  ner:": f"  {name}:"}), training=False)
        assert list(evaluation.tasks) == ["sentiment", name.strip("'")]
    long = "n" * 300
    assert list(load_recipe(recipe_file(tmp_path, replace={"  ner:": f"  {long}:"})).tasks) == ["sentiment", long]
    assert list(load_recipe(recipe_file(tmp_path, replace={"  ner:": "  ner/de-2:"})).tasks) == ["sentiment", "ner/de-2"]


@pytest.mark.parametrize("key,line", [("yes", "true"), ("~", "null")])
def test_a_key_yaml_reads_as_a_boolean_or_null_is_named_where_it_is(tmp_path, key, line):
    message = error(recipe_file(tmp_path, replace={"  ner:": f"  {key}:"}))
    assert message == f"{tmp_path / 'r.yaml'}:{LINE['ner']}: tasks.{key}: YAML reads the key {key} as {line}: quote it"


@pytest.mark.parametrize("invisible", ["\u200b", "\ufeff", "\u00ad", "\u200e"])  # ZWSP, BOM, soft hyphen, LRM
def test_a_new_task_name_with_an_invisible_character_is_refused_where_it_is(tmp_path, invisible):
    """`sentiment\u200b` (pasted from a web page) shows as `sentiment` in every table and output, where
    `--tasks sentiment` does not find it. A trained model's name (an evaluation recipe's) is still taken."""
    path = recipe_file(tmp_path, replace={"  ner:": f"  n{invisible}er:"})
    escaped = ascii(invisible)[1:-1]
    assert error(path) == (f"{path}:{LINE['ner']}: tasks.n{escaped}er: a task name has no invisible character "
                           f"(U+{ord(invisible):04X} here): `--tasks` and the outputs would show the name without it")
    assert f"n{invisible}er" in load_recipe(path, training=False).tasks


def test_task_names_that_read_alike_or_name_an_onnx_input_are_noted_at_start(tmp_path, recwarn):
    """`topic` and `Topic` are two tasks (a typo in a 20-task recipe, most likely); a task named input_ids trained,
    and only `export --onnx` refused it. Not said of an evaluation recipe, which names a trained model's tasks."""
    two = BASE.replace("  ner:", "  Ｓentiment:")  # a full-width S
    path = recipe_file(tmp_path, two.replace("tasks:\n", "tasks:\n  SENTIMENT:\n    type: regression\n    data: "
                                                          "{train: a.tsv}\n", 1))
    load_recipe(path)
    assert [str(w.message) for w in recwarn] == [f"{path}:{LINE['sentiment'] + 3}: tasks.sentiment: tasks 'SENTIMENT' and "
                                                 "'sentiment' and '\\uff33entiment' differ only in case, Unicode form or "
                                                 "invisible characters: they are 3 tasks"]
    recwarn.clear()
    path = recipe_file(tmp_path, replace={"  ner:": "  input_ids:"})
    load_recipe(path)
    assert [str(w.message) for w in recwarn] == [f"{path}:{LINE['ner']}: tasks.input_ids: `mtnlp export --onnx` cannot "
                                                 "export this head: an input of its graph has the name"]
    import warnings

    with warnings.catch_warnings(record=True) as said:  # (recwarn would not see a warning given once already)
        warnings.simplefilter("always")
        load_recipe(path, training=False)
        load_recipe(recipe_file(tmp_path, two), training=False)
    assert not said


def test_a_task_named_token_type_ids_is_noted_with_the_encoders_that_take_them(tmp_path, recwarn):
    path = recipe_file(tmp_path, replace={"  ner:": "  token_type_ids:"})
    load_recipe(path)
    assert [str(w.message) for w in recwarn] == [f"{path}:{LINE['ner']}: tasks.token_type_ids: `mtnlp export --onnx` "
                                                 "cannot export this head: an input of its graph has the name (with an "
                                                 "encoder that takes token types)"]


def test_batch_tokens_may_equal_max_length_and_init_revision_needs_init_from(tmp_path):
    recipe = load_recipe(recipe_file(tmp_path), ["training.batch_tokens=128", "model.max_length=128"])
    assert recipe.training.batch_tokens == recipe.model.max_length == 128
    assert "training.batch_tokens: must be at least model.max_length (128), got 127" in error(
        recipe_file(tmp_path), ["training.batch_tokens=127", "model.max_length=128"])
    assert error(recipe_file(tmp_path), ["model.init_revision=v1"]).endswith(
        "model.init_revision: applies to a transfer: set model.init_from too")


def test_a_task_named_by_a_number_is_told_to_quote_it(tmp_path):
    message = error(recipe_file(tmp_path, replace={"  ner:": "  2024:"}))
    assert message == f"{tmp_path / 'r.yaml'}:{LINE['ner']}: tasks.2024: YAML reads the key 2024 as a number: quote it"
    assert list(load_recipe(recipe_file(tmp_path, replace={"  ner:": "  '2024':"})).tasks) == ["sentiment", "2024"]
    assert error(recipe_file(tmp_path, replace={"  ner:": "  1.5:"})).endswith(
        "YAML reads the key 1.5 as a number, and a task name has no '.': rename the task")


def test_nested_aliases_stop_before_they_fill_memory(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]  # 10**8 values in all
    message = error(recipe_file(tmp_path, "\n".join(lines) + "\nname: *a7\n"))
    assert message == f"{tmp_path / 'r.yaml'}:4: the aliases of this anchor expand the recipe to more than 100,000 values"


def test_a_long_bad_value_is_shortened_in_the_message(tmp_path):
    message = error(recipe_file(tmp_path), ["training.steps=[" + ", ".join(["1"] * 10_000) + "]"])
    assert "training.steps: expected int, got [1, 1," in message and len(message.split(" got ")[1]) == 80, message


def test_a_second_document_and_a_byte_that_is_not_utf8_are_named(tmp_path):
    assert error(recipe_file(tmp_path, BASE + "---\nname: u\n")).endswith(
        ":19: invalid YAML: a recipe is one YAML document (a second '---' starts another)")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.encode() + "# café\n".encode("latin-1"))
    assert error(path) == f"{path}:19: byte 0xe9 is not valid utf-8; save the recipe as UTF-8"


def test_override_of_one_label_name_a_list_item_and_an_empty_key_part(tmp_path):
    path = recipe_file(tmp_path, replace={"      text_column: sentence": "      text_column: sentence\n"
                                                                        "      label_names: {0: negative, 1: positive}"})
    recipe = load_recipe(path, ["tasks.sentiment.data.label_names.0=neg"])  # the file's key is the int 0
    assert recipe.tasks["sentiment"].data.label_names == {"0": "neg", "1": "positive"}
    assert error(path, ["tasks.sentiment.metrics.0=f1"]) == ("override 'tasks.sentiment.metrics.0=f1': tasks.sentiment."
                                                             "metrics is a list: give the whole list, e.g. "
                                                             "tasks.sentiment.metrics=[a, b]")
    assert error(path, ["training.lr.=1e-3"]) == "override 'training.lr.=1e-3': an empty part in the key 'training.lr.'"
    # one key into a value that is not a mapping replaced it, silently where both validate (label_weights:
    # balanced became {NUM:temp: 5}: every other label weighed 1)
    assert error(path, ["tasks.sentiment.label_weights=balanced", "tasks.sentiment.label_weights.1=5"]) == (
        "override 'tasks.sentiment.label_weights.1=5': tasks.sentiment.label_weights is 'balanced', not a mapping: "
        "give the whole value, e.g. tasks.sentiment.label_weights={key: value}")
    assert load_recipe(path, ["tasks.sentiment.label_weights.1=5"]).tasks["sentiment"].label_weights == {"1": 5.0}


def test_output_dir_paths(tmp_path, monkeypatch):
    """A file where the run's folder would be is an error at once; ~ is the home folder in a file too;
    an empty output_dir on the command line is the default, as in a file (not the current folder)."""
    (tmp_path / "f").write_text("")
    for value in ("f", "f/run"):
        assert error(recipe_file(tmp_path), [f"output_dir={tmp_path / value}"], training=True).endswith(
            f"output_dir: {tmp_path / 'f'} is a file, not a folder")
        load_recipe(recipe_file(tmp_path), [f"output_dir={tmp_path / value}"])  # mtnlp evaluate writes nothing there
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = recipe_file(tmp_path, BASE + "output_dir: ~/runs/t\ntraining:\n  resume_from: ~/runs/t/checkpoints/step-2\n",
                       replace={"training:\n  steps: 5\n  lr: 0.001\n": ""})
    recipe = load_recipe(path)
    assert recipe.output_dir == str(tmp_path / "home" / "runs" / "t")
    assert recipe.training.resume_from == str(tmp_path / "home" / "runs" / "t" / "checkpoints" / "step-2")
    monkeypatch.chdir(tmp_path)
    from mtnlp.recipe import run_directory
    assert run_directory(load_recipe(recipe_file(tmp_path), ["output_dir=''"])) == Path("runs/t")


def test_an_encoder_folder_that_is_not_there_and_init_heads_without_a_transfer(tmp_path):
    assert error(recipe_file(tmp_path), [f"model.encoder={tmp_path / 'nope'}"], training=True).endswith(
        f"model.encoder: {tmp_path / 'nope'}: folder not found")
    load_recipe(recipe_file(tmp_path), [f"model.encoder={tmp_path / 'nope'}"])  # mtnlp evaluate does not read it
    assert error(recipe_file(tmp_path), ["model.init_heads=false"]).endswith(
        "model.init_heads: applies to a transfer: set model.init_from too")


def test_a_transfer_reads_no_encoder_and_may_not_replace_its_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "src" / "model").mkdir(parents=True)
    with pytest.warns(UserWarning, match=r"model.encoder: not read: with model.init_from the encoder is the source's$"):
        load_recipe(recipe_file(tmp_path), ["model.init_from=runs/src", "model.encoder=org/other"])
    for source in ("runs/src", "runs/src/model", "runs/src/checkpoints/step-4"):
        said = error(recipe_file(tmp_path), [f"model.init_from={source}", "output_dir=runs/src", "overwrite_output_dir=true"],
                     training=True)
        assert said.endswith(f"model.init_from: {tmp_path / source} is in what this run replaces in output_dir "
                             f"{tmp_path / 'runs' / 'src'} (overwrite_output_dir: true): choose another output_dir"), said
    for source, output_dir in (("runs/src", "runs/ft"), ("runs/src/kept/model", "runs/src"), ("org/model", ".")):
        check_training_paths(load_recipe(recipe_file(tmp_path), [f"model.init_from={source}", f"output_dir={output_dir}",
                                                                 "overwrite_output_dir=true"]))


def test_method_names_are_checked_for_training_only_against_what_is_registered_then(tmp_path, monkeypatch):
    """`mtnlp evaluate RUN/recipe.yaml` of a run whose copied script added a sampling strategy and a weighting
    was refused for names it never reads; training checks them (with their line) when the recipe is read."""
    from mtnlp import gradients, sampling, weighting

    path = recipe_file(tmp_path, BASE.replace("strategy: proportional", "strategy: mine") + "mtl:\n  weighting: ours\n")
    recipe = load_recipe(path, training=False)
    assert (recipe.sampling.strategy, recipe.mtl.weighting) == ("mine", "ours")
    assert error(path) == (f"{path}:{LINE['strategy']}: sampling.strategy: unknown value 'mine' (expected one of: "
                           f"{', '.join(sampling.STRATEGIES)})")
    monkeypatch.setitem(sampling.STRATEGIES, "mine", lambda sizes, progress, **options: sizes)
    line = len(BASE.splitlines()) + 2
    assert error(path).startswith(f"{path}:{line}: mtl.weighting: unknown value 'ours' (expected one of: static,")
    monkeypatch.setitem(weighting.WEIGHTINGS, "ours", weighting.StaticWeighting)
    assert load_recipe(path).mtl.weighting == "ours"
    theirs = recipe_file(tmp_path, BASE + "mtl:\n  gradient: theirs\n", name="g.yaml")
    assert load_recipe(theirs, training=False).mtl.gradient == "theirs"
    assert error(theirs) == (f"{theirs}:{len(BASE.splitlines()) + 2}: mtl.gradient: unknown value 'theirs' "
                             f"(expected one of: {', '.join(gradients.GRADIENT_METHODS)})")
    monkeypatch.setitem(gradients.GRADIENT_METHODS, "theirs", gradients.PCGrad)
    assert load_recipe(theirs).mtl.gradient == "theirs"


def test_a_task_type_added_after_the_recipe_module_is_imported_is_named_so(tmp_path, monkeypatch):
    from mtnlp import recipe as recipes
    from mtnlp.tasks import TASK_TYPES

    monkeypatch.setitem(TASK_TYPES, "mine", TASK_TYPES["classification"])
    path = recipe_file(tmp_path, replace={"type: classification": "type: mine"})
    assert error(path) == (f"{path}:{LINE['sentiment'] + 1}: tasks.sentiment.type: unknown value 'mine': added to "
                           f"TASK_TYPES after mtnlp.recipe was imported; add it before (expected one of: "
                           f"{', '.join(recipes.RECIPE_TYPES)})")


def test_overrides_given_as_one_string_from_python_are_a_type_error(tmp_path):
    with pytest.raises(TypeError, match=r"^overrides: expected a list of key=value strings, got the string "
                                        r"'training.steps=3'$"):
        load_recipe(recipe_file(tmp_path), "training.steps=3")


def test_a_recipe_script_or_a_folder_given_as_the_recipe_is_named(tmp_path):
    script = tmp_path / "multitask.py"
    script.write_text("print('a recipe script')\n")
    assert error(script) == f"{script}: a recipe script, not a recipe: run it, `python {script} --config RECIPE.yaml`"
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # `mtnlp evaluate RECIPE MODEL`: was "[Errno 21] Is a directory"
    assert error(model) == f"{model}: a folder, not a recipe file (a model folder; a recipe is a YAML file)"


def test_resume_from_a_run_folder_names_its_newest_checkpoint(tmp_path):
    from mtnlp.folders import find_checkpoint

    for step in (2, 10, 12):
        (tmp_path / "run" / "checkpoints" / f"step-{step:06d}").mkdir(parents=True)
        for name in ("trainer_state.json", "model.safetensors", "optimizer.pt")[:3 if step < 12 else 1]:
            (tmp_path / "run" / "checkpoints" / f"step-{step:06d}" / name).write_text("{}")
    newest = tmp_path / "run" / "checkpoints" / "step-000010"  # (12: its state alone, made by hand)
    for given in (tmp_path / "run", tmp_path / "run" / "checkpoints"):
        with pytest.raises(UserError, match=rf"^k: {given} is not a complete checkpoint \(no trainer_state.json\): "
                                            rf"give one of its checkpoints, e.g. the newest, {newest}$"):
            find_checkpoint(tmp_path, str(given), "k")
    with pytest.raises(UserError, match=r"^k: .*notes.txt: a file, not a checkpoint folder$"):
        (tmp_path / "notes.txt").write_text("x")
        find_checkpoint(tmp_path, str(tmp_path / "notes.txt"), "k")


def test_the_defaults_the_readme_gives_are_the_recipes():
    """The README states these defaults in prose and in its recipe reference; no test pinned them."""
    import re
    from pathlib import Path

    from mtnlp.recipe import MTLSpec, SamplingSpec

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    said = {key: re.search(rf"`{key}`[^(|]*\(default ([0-9.e-]+)\)", readme).group(1)
            for key in ("weighting_lr", "dwa_window", "dwa_temperature")}
    assert {key: float(value) for key, value in said.items()} == {key: float(getattr(MTLSpec(), key)) for key in said}
    assert re.search(r"\n  strategy: .*# .*?(\w+) \(default\)", readme).group(1) == SamplingSpec().strategy


def test_an_empty_label_sep_is_refused_where_yaml_made_it_from_a_bare_bar(tmp_path):
    """`label_sep: |` is an empty block scalar to YAML: an empty separator was ignored, so a multilabel task
    trained on label combinations ('fun|pos') and a classification task kept whole labels, without a word."""
    path = recipe_file(tmp_path, replace={"      text_column: sentence\n": "      text_column: sentence\n      label_sep: |\n"})
    assert error(path) == (f"{path}:8: tasks.sentiment.data.label_sep: an empty separator (YAML reads a bare | or > "
                           "as empty text: quote it, '|')")
    assert "an empty separator" in error(DEMO, ["tasks.sentiment.data.label_sep=|"])
    assert load_recipe(DEMO, ["tasks.sentiment.data.label_sep='|'"]).tasks["sentiment"].data.label_sep == "|"


MULTILABEL = ["tasks.topics.type=multilabel", f"tasks.topics.data.train={DATA / 'sst2_sample.jsonl'}"]


@pytest.mark.parametrize("grid,said", [("[]", "tasks.topics.threshold_grid: List should have at least 1 item"),
                                       ("[0.5, 2]", "tasks.topics.threshold_grid.1: must be < 1, got 2"),
                                       ("[.nan]", "tasks.topics.threshold_grid.0: must be a finite number, got nan")])
def test_a_threshold_grid_is_a_non_empty_list_of_thresholds(grid, said):
    """[] crashed after the whole run, when the thresholds were tuned; [2, -1] saved a threshold of -1 (every
    label always predicted)."""
    assert said in error(DEMO, [*MULTILABEL, f"tasks.topics.threshold_grid={grid}"])
    assert load_recipe(DEMO, [*MULTILABEL, "tasks.topics.threshold_grid=[1e-1, 0.5]"]).tasks["topics"].threshold_grid == [0.1, 0.5]


def test_a_label_weight_in_e_notation_is_a_number_as_lr_is():
    """YAML 1.1 reads 1e1 as a string: it was "not a positive number", where lr: 3e-5 is one (README)."""
    spec = load_recipe(DEMO, ["tasks.sentiment.label_weights={positive: 1e1, negative: 2.5e-1}"]).tasks["sentiment"]
    assert spec.label_weights == {"positive": 10.0, "negative": 0.25}


@pytest.mark.parametrize("written,said", [
    ("name: no", "name: expected str, got False (YAML reads an unquoted yes, no, on, off, true or false as a boolean: "
                 "quote it)"),
    ("name: 2026-12-07", "name: expected str, got datetime.date(2026, 12, 7) (YAML reads an unquoted 2026-12-07 as a "
                         "date: quote it)"),
    ("name: ~", "name: expected str, got None (YAML reads ~, null or nothing as null: quote it, or give a value)")])
def test_a_text_yaml_read_as_a_boolean_date_or_null_says_why(tmp_path, written, said):
    path = recipe_file(tmp_path, replace={"name: t": written})
    assert error(path) == f"{path}:1: {said}"


@pytest.mark.parametrize("split,value", [("train", "https://raw.githubusercontent.com/org/repo/main/train.csv"),
                                         ("validation", "s3://bucket/dev.tsv"),
                                         ("train", "{text: 'http://x.org/t.txt', labels: l.txt}")])
def test_a_data_file_given_as_a_url_is_refused_saying_so(tmp_path, split, value):
    """It was "<recipe folder>/https:/raw.githubusercontent.com/...: file not found"."""
    given = f'      train: {DATA / "sst2_sample.jsonl"}'
    written = f"      {split}: {value}" + (f"\n{given}" if split == "validation" else "")
    path = recipe_file(tmp_path, replace={given: written})
    url = value.split("'")[1] if "{" in value else value
    message = error(path)
    assert message.startswith(f"{path}:") and message.endswith(
        f"tasks.sentiment.data.{split}: {url!r} is a URL: data files are read from disk, so download it first (a data "
        "set on the Hugging Face hub: data.hub names it)"), message

    with pytest.raises(UserError, match=r"tasks.sentiment.data.hub: 'https://huggingface.co/datasets/org/sst2' is a hub "
                                        r"page's address: give the data set's id, org/sst2$"):
        load_recipe(recipe_file(tmp_path), ["tasks.sentiment.data={hub: 'https://huggingface.co/datasets/org/sst2', "
                                            "train: train}"])
    with pytest.raises(UserError, match=r"is a hub page's address: give the data set's id, imdb$"):
        load_recipe(recipe_file(tmp_path), ["tasks.sentiment.data={hub: 'https://huggingface.co/datasets/imdb/viewer/"
                                            "plain_text/train', train: train}"])


# ---------------------------------------------------------------- pinned by mutation testing (mutation9 survivors)

def test_a_home_path_is_expanded_for_the_encoder_the_transfer_source_and_data_dir(tmp_path, monkeypatch):
    """model.encoder: ~/models/x stayed '~/models/x', which training then said was no folder ("folder not found")."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    recipe = load_recipe(recipe_file(tmp_path, BASE + "model: {encoder: ~/models/enc}\ndata_dir: ~/data\n"))
    assert (recipe.model.encoder, recipe.data_dir) == (str(tmp_path / "home" / "models" / "enc"),
                                                       str(tmp_path / "home" / "data"))
    recipe = load_recipe(recipe_file(tmp_path, BASE + "model: {init_from: ~/runs/src/model}\n"))
    assert recipe.model.init_from == str(tmp_path / "home" / "runs" / "src" / "model")


def test_of_a_unions_errors_the_one_deepest_in_the_recipe_is_said(tmp_path):
    """For a lines mapping with a number as its labels file, the whole mapping was said not to be a string (the
    least specific of pydantic's errors for the union), not its `labels` key."""
    given = f'      train: {DATA / "sst2_sample.jsonl"}'
    path = recipe_file(tmp_path, replace={given: "      train: {text: a.txt, labels: 5}"})
    assert error(path) == f"{path}:6: tasks.sentiment.data.train.labels: expected str, got 5 (YAML reads an " \
                          "unquoted 5 as a number: quote it)"


@pytest.mark.parametrize("written", ["-010", "+010"])
def test_a_signed_octal_number_is_refused_as_an_unsigned_one_is(tmp_path, written):
    """YAML 1.1 reads -010 as -8: a seed said "must be >= 0, got -8", a number never written, and a label name -010
    became '-8' silently."""
    said = (f"{written} is an octal number to YAML: for the number write {int(written)}, without leading zeros; for a "
            f"text quote it ('{written}')")
    path = recipe_file(tmp_path, replace={"  lr: 0.001": f"  lr: 0.001\n  seed: {written}"})
    assert error(path) == f"{path}:{LINE['lr'] + 1}: training.seed: {said}"
    assert error(recipe_file(tmp_path), [f"tasks.sentiment.data.label_names={{{written}: neg, 1: pos}}"]).endswith(
        f"tasks.sentiment.data.label_names: {said}")
