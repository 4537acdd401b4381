"""`data.hub` goes through datasets.load_dataset; a local dataset folder stands in for a hub id offline."""

import datasets
import pytest
import yaml

from mtnlp.data import load_task
from mtnlp.errors import UserError
from mtnlp.recipe import load_recipe


def write_parquet_dataset(folder):
    sent = datasets.Dataset.from_dict(
        {"sentence": ["a fine film", "dull and long", "great acting", "boring plot"], "label": [1, 0, 1, 0]},
        features=datasets.Features({"sentence": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["negative", "positive"])}))
    folder.mkdir()
    sent.to_parquet(str(folder / "train.parquet"))
    sent.select([0, 1]).to_parquet(str(folder / "validation.parquet"))
    tags = datasets.Dataset.from_dict(
        {"tokens": [["Ann", "lives", "in", "Rome"], ["Bob", "left"]], "ner_tags": [[1, 0, 0, 2], [1, 0]]},
        features=datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                                    "ner_tags": datasets.List(datasets.ClassLabel(names=["O", "B-PER", "B-LOC"]))}))
    (folder.parent / "tags").mkdir()
    tags.to_parquet(str(folder.parent / "tags" / "train.parquet"))


def hub_recipe(tmp_path, hub, **data):
    """A recipe of one classification task, t, reading the train split of data set `hub` (and `data`'s keys)."""
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(yaml.safe_dump({"tasks": {"t": {"type": "classification", "data": {
        "hub": str(hub), "train": "train", **data}}}}))
    return load_recipe(recipe_file)


def test_hub_style_source_maps_class_labels_to_names(tmp_path, tiny_encoder):
    from transformers import AutoTokenizer

    write_parquet_dataset(tmp_path / "ds")
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(yaml.safe_dump({"model": {"encoder": tiny_encoder}, "tasks": {
        "sent": {"type": "classification", "data": {"hub": str(tmp_path / "ds"), "train": "train",
                                                    "validation": "validation", "text_column": "sentence"}},
        "ner": {"type": "tagging", "data": {"hub": str(tmp_path / "tags"), "train": "train",
                                            "tag_column": "ner_tags"}}}}))
    recipe = load_recipe(recipe_file)
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    sent = load_task(recipe, "sent", recipe.tasks["sent"], tokenizer, 32)
    assert sent.labels == ["negative", "positive"]
    assert sent.splits["validation"]["labels"] == [1, 0]
    ner = load_task(recipe, "ner", recipe.tasks["ner"], tokenizer, 32)
    assert ner.labels == ["B-LOC", "B-PER", "O"]
    assert ner.splits["train"]["tags"][0] == ["B-PER", "O", "O", "B-LOC"]


def test_a_dataset_saved_with_save_to_disk_is_a_train_split_that_slices(tmp_path, tiny_encoder):
    from transformers import AutoTokenizer

    rows = {"sentence": [f"text number {i}" for i in range(10)], "label": [i % 2 for i in range(10)]}
    datasets.Dataset.from_dict(rows, features=datasets.Features({
        "sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    ).save_to_disk(str(tmp_path / "saved"))
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(yaml.safe_dump({"tasks": {"t": {"type": "classification", "data": {
        "hub": str(tmp_path / "saved"), "train": "train[:80%]", "validation": "train[80%:]",
        "text_column": "sentence"}}}}))
    recipe = load_recipe(recipe_file)
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    task = load_task(recipe, "t", recipe.tasks["t"], tokenizer, 32)
    assert task.labels == ["neg", "pos"]
    assert task.splits["train"]["text"] == rows["sentence"][:8] and task.splits["validation"]["text"] == rows["sentence"][8:]
    recipe = load_recipe(recipe_file, ["tasks.t.data.validation=test"])
    with pytest.raises(UserError, match=r"\(command-line override\): tasks.t.data.validation: .*saved is one Dataset "
                                        r"saved with save_to_disk, whose splits are 'train' \(or slices of them, e.g. "
                                        r"'train\[:90%\]'\), not 'test'"):
        load_task(recipe, "t", recipe.tasks["t"], tokenizer, 32)
    recipe = load_recipe(recipe_file, ["tasks.t.data.config=sst2"])  # it was read nowhere
    with pytest.raises(UserError, match=r"saved with save_to_disk, which keeps no configurations: leave data.config "
                                        r"\('sst2'\) out$"):
        load_task(recipe, "t", recipe.tasks["t"], tokenizer, 32)


def test_a_dataset_dict_saved_with_save_to_disk_keeps_its_own_split_names(tmp_path, tiny_encoder):
    """load_dataset guessed its splits from the folder names: train_extra went into train, validation_matched and
    validation_mismatched into one validation, and their own names were unknown splits."""
    from transformers import AutoTokenizer

    def part(label, n):
        return datasets.Dataset.from_dict({"text": [f"{label} {i}" for i in range(n)], "label": [label] * n})

    datasets.DatasetDict({"train": datasets.concatenate_datasets([part("a", 4), part("b", 4)]),
                          "train_extra": part("c", 6), "validation_matched": part("a", 2),
                          "validation_mismatched": part("b", 3)}).save_to_disk(str(tmp_path / "dd"))
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(yaml.safe_dump({"tasks": {"t": {"type": "classification", "data": {
        "hub": str(tmp_path / "dd"), "train": "train", "validation": "validation_mismatched[1:]"}}}}))
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    recipe = load_recipe(recipe_file)
    task = load_task(recipe, "t", recipe.tasks["t"], tokenizer, 32)
    assert task.splits["train"]["text"] == [f"a {i}" for i in range(4)] + [f"b {i}" for i in range(4)]
    assert task.splits["validation"]["text"] == ["b 1", "b 2"]
    recipe = load_recipe(recipe_file, ["tasks.t.data.validation=validation"])
    with pytest.raises(UserError, match=r"tasks.t.data.validation: .*dd is a DatasetDict saved with save_to_disk, whose "
                                        r"splits are 'train', 'train_extra', 'validation_matched', "
                                        r"'validation_mismatched' \(or slices"):
        load_task(recipe, "t", recipe.tasks["t"], tokenizer, 32)


CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.jsonl
---
"""


def test_a_local_data_set_with_a_card_is_read_again_when_its_files_change(tmp_path, monkeypatch):
    """datasets keys a folder whose card lists configs by its name alone: an edited file, a new shard and another
    folder of the same name gave the examples cached first."""
    import json
    import os

    from mtnlp.data import read_task

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))

    def folder(root, shards):
        (root / "reviews" / "data").mkdir(parents=True, exist_ok=True)
        (root / "reviews" / "README.md").write_text(CARD)
        for k, labels in enumerate(shards):
            shard = root / "reviews" / "data" / f"train-{k}.jsonl"
            shard.write_text("".join(json.dumps({"text": f"{label} {i}", "label": label}) + "\n"
                                     for i, label in enumerate(labels)))
        return root / "reviews"

    def labels_read(path):
        recipe = hub_recipe(tmp_path, path)
        rows = read_task(recipe, "t", recipe.tasks["t"]).examples["train"].to_pylist()
        return sorted(row["label"] for row in rows)

    team_a = folder(tmp_path / "a", [["x", "y", "x"]])
    assert labels_read(team_a) == ["x", "x", "y"]
    assert labels_read(folder(tmp_path / "b", [["good", "bad"]])) == ["bad", "good"]  # another folder "reviews"
    shard = team_a / "data" / "train-0.jsonl"
    shard.write_text(shard.read_text().replace('"y"', '"z"'))
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    assert labels_read(team_a) == ["x", "x", "z"]  # the edited file
    folder(tmp_path / "a", [["x", "z", "x"], ["w"]])
    assert labels_read(team_a) == ["w", "x", "x", "z"]  # a new shard


def test_a_bad_row_in_a_local_data_sets_file_is_named_with_its_cause(tmp_path):
    """datasets' DatasetGenerationError says "An error occurred while generating the dataset", the cause beneath."""
    from mtnlp.data import read_task

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b" "label": "y"}\n')
    recipe = hub_recipe(tmp_path, tmp_path / "bad")
    with pytest.raises(UserError, match=r"tasks.t.data.hub: cannot load split 'train' of '.*bad': An error occurred "
                                        r"while generating the dataset: \w+: .*JSON"):
        read_task(recipe, "t", recipe.tasks["t"])


def test_an_unknown_split_names_the_split_key_and_its_line(tmp_path, tiny_encoder):
    from transformers import AutoTokenizer

    write_parquet_dataset(tmp_path / "ds")
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("tasks:\n  t:\n    type: classification\n    data:\n"
                           f"      hub: {tmp_path / 'ds'}\n      train: train\n      validation: dev\n"
                           "      text_column: sentence\n")
    recipe = load_recipe(recipe_file)
    with pytest.raises(UserError, match=rf"^{recipe_file}:7: tasks.t.data.validation: cannot load split 'dev' of "
                                        r"'.*ds': Unknown split \"dev\". Should be one of \['train', 'validation'\]"):
        load_task(recipe, "t", recipe.tasks["t"], AutoTokenizer.from_pretrained(tiny_encoder), 32)


TWO_CONFIGS = """---
configs:
- config_name: a
  data_files:
  - split: train
    path: a/train.jsonl
- config_name: b
  data_files:
  - split: train
    path: b/train.jsonl
---
"""


@pytest.mark.parametrize("data,key,said", [
    ({}, "config", "Config name is missing. Please pick one among the available configs: ['a', 'b']"),
    ({"config": "c"}, "config", "BuilderConfig 'c' not found"),
    ({"config": "a", "train": "train[5:]"}, "train", 'Instruction "train[5:]" corresponds to no data'),
    ({"streaming": True, "size": 2, "label_names": {"p": "p", "q": "q"}}, "config", "Config name is missing"),
    ({"streaming": True, "size": 2, "label_names": {"p": "p", "q": "q"}, "config": "c"}, "config",
     "BuilderConfig 'c' not found"),
])
def test_a_missing_config_and_an_empty_slice_name_their_own_key(tmp_path, monkeypatch, data, key, said):
    """Both were named as data.hub, as if the data set were not there."""
    from mtnlp.data import read_task

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "README.md").write_text(TWO_CONFIGS)
    for config in ("a", "b"):
        (tmp_path / "set" / config).mkdir()
        (tmp_path / "set" / config / "train.jsonl").write_text('{"text": "x", "label": "p"}\n{"text": "y", "label": "q"}\n')
    recipe = hub_recipe(tmp_path, tmp_path / "set", **data)
    with pytest.raises(UserError) as error:
        read_task(recipe, "t", recipe.tasks["t"])
    at = recipe.where(f"tasks.t.data.{key if key in data or key == 'train' else 'hub'}")  # no config: data.hub's line
    assert str(error.value).startswith(f"{at}: tasks.t.data.{key}: cannot load split") and said in str(error.value)
    assert (at == recipe.where("tasks.t.data.hub")) == (key == "config" and "config" not in data)


def test_unreachable_hub_dataset_is_a_user_error(tmp_path, tiny_encoder, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    recipe = hub_recipe(tmp_path, "no-such-org/no-such-dataset")
    with pytest.raises(UserError, match=r"r.yaml:\d+: tasks.t.data.hub: cannot load split 'train' of 'no-such-org/no-such-dataset'"):
        load_task(recipe, "t", recipe.tasks["t"], AutoTokenizer.from_pretrained(tiny_encoder), 32)


class Rows(list):
    """Rows as datasets gives them (iterable, with .features); `fail_after`: reading breaks off there."""

    def __init__(self, rows, features, fail_after=None):
        super().__init__(rows)
        self.features, self.fail_after = features, fail_after

    def __iter__(self):
        for i, row in enumerate(super().__iter__()):
            if i == self.fail_after:
                raise ConnectionError("Server Disconnected")
            yield row


TAG_FEATURES = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                                  "tags": datasets.List(datasets.ClassLabel(names=["O", "B-PER", "B-LOC"]))})


@pytest.mark.parametrize("tags, message", [
    ([1, 0, -1], "x[train]: row 1: item 3 of tags: no label (-1); unlabelled examples cannot be used"),  # datasets' "no label": not the last name
    ([1, 0, 3], "x[train]: row 1: item 3 of tags: label id 3 is not one of the ClassLabel feature's 3 ids (0-2)"),
])
def test_class_label_ids_without_a_name_are_errors(tags, message):
    from mtnlp.readers import hub_examples
    from mtnlp.spec import DataSpec

    rows = Rows([{"tokens": ["a", "b", "c"], "tags": [0, 0, 0]}, {"tokens": ["Ann", "x", "Rome"], "tags": tags}],
                TAG_FEATURES)
    with pytest.raises(UserError) as e:
        list(hub_examples(rows, "x[train]", DataSpec(), "tagging"))
    assert str(e.value) == message


def test_a_read_that_breaks_off_or_finds_nothing_is_one_error_line():
    from mtnlp.readers import hub_examples
    from mtnlp.spec import DataSpec

    row = {"tokens": ["a"], "tags": [0]}
    with pytest.raises(UserError, match=r"^x\[train\]: reading the data set failed: ConnectionError: Server Disconnected$"):
        list(hub_examples(Rows([row, row], TAG_FEATURES, fail_after=1), "x[train]", DataSpec(), "tagging"))
    with pytest.raises(UserError, match=r"^x\[train\]: no examples found$"):  # e.g. an empty streamed split
        list(hub_examples(Rows([], TAG_FEATURES), "x[train]", DataSpec(), "tagging"))


def test_a_datasets_cache_that_cannot_be_written_is_named_as_the_cache_not_the_data_set(tmp_path, monkeypatch):
    """datasets writes a lock file in its cache even for a data set it has cached: the error blamed data.hub."""
    from mtnlp.data import read_task

    write_parquet_dataset(tmp_path / "ds")

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/ro-cache/_ds_default_0.0.0.lock")

    monkeypatch.setattr(datasets, "load_dataset", refused)
    recipe = hub_recipe(tmp_path, tmp_path / "ds", text_column="sentence")
    with pytest.raises(UserError, match=r"^\S+r.yaml:\d+: tasks.t.data.hub: datasets cannot write its cache \(Permission "
                                        r"denied: /ro-cache/_ds_default_0.0.0.lock\), which it needs to read a data set, "
                                        r"also one it has cached: set HF_DATASETS_CACHE \(or HF_HOME\) to a folder you "
                                        r"can write$"):
        read_task(recipe, "t", recipe.tasks["t"])


def test_label_names_keyed_by_class_label_ids_are_told_that_the_ids_come_as_names(tmp_path):
    """The demo's file-based label_names {0: negative, 1: positive} moved to a hub set with a ClassLabel column:
    its ids are read as their names, and the refusal did not say why."""
    from mtnlp.data import read_task

    write_parquet_dataset(tmp_path / "ds")
    recipe = hub_recipe(tmp_path, tmp_path / "ds", text_column="sentence", label_names={0: "neg", 1: "pos"})
    with pytest.raises(UserError, match=r"row 0: label 'positive' is not in data.label_names \(0, 1\): its keys are "
                                        r"numbers and the labels are not \(a hub data set's ClassLabel ids are read as "
                                        r"their names\): key it by the labels as the data gives them$"):
        read_task(recipe, "t", recipe.tasks["t"])


def test_a_local_data_set_cloned_without_its_lfs_files_names_the_pointer(tmp_path):
    """`git clone` of a hub data set without git-lfs: datasets said "Parquet magic bytes not found", naming no file."""
    from mtnlp.data import read_task

    write_parquet_dataset(tmp_path / "ds")
    pointer = tmp_path / "ds" / "train.parquet"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 1234\n")
    recipe = hub_recipe(tmp_path, tmp_path / "ds", text_column="sentence")
    with pytest.raises(UserError, match=rf"^{pointer}: a Git LFS pointer, not the data: .*`git lfs pull`"):
        read_task(recipe, "t", recipe.tasks["t"])


def test_a_data_file_given_as_data_hub_is_told_where_it_goes(tmp_path):
    from mtnlp.data import read_task

    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "x"}\n')
    recipe = hub_recipe(tmp_path, tmp_path / "train.jsonl")
    with pytest.raises(UserError, match=r"tasks.t.data.hub: \S+train.jsonl is a file: data.hub names a data set folder "
                                        r"or hub id, and a data file is a split's own \(data.train: FILE, without hub\)$"):
        read_task(recipe, "t", recipe.tasks["t"])
