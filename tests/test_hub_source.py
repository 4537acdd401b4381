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
                                        r"saved with save_to_disk: its one "
                                        r"split is 'train' \(or a slice of it, e.g. 'train\[:90%\]'\), not 'test'"):
        load_task(recipe, "t", recipe.tasks["t"], tokenizer, 32)


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


def test_unreachable_hub_dataset_is_a_user_error(tmp_path, tiny_encoder, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(yaml.safe_dump({"tasks": {"t": {"type": "classification", "data": {
        "hub": "no-such-org/no-such-dataset", "train": "train"}}}}))
    recipe = load_recipe(recipe_file)
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
