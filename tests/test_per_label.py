"""Each label's precision, recall, F1 and support: TaskType.per_label by hand, metrics.json's `per_label`,
`mtnlp evaluate`'s JSON and its --per-label table."""

import json

import pytest
from seqeval.metrics.sequence_labeling import get_entities
from sklearn.metrics import f1_score

from conftest import DATA, tiny_tasks
from mtnlp.cli import main
from mtnlp.recipe import load_recipe
from mtnlp.recipes.multitask import train
from mtnlp.tasks import TASK_TYPES


def figures(precision, recall, f1, support):
    return {"precision": pytest.approx(precision), "recall": pytest.approx(recall), "f1": pytest.approx(f1),
            "support": support}


def test_classification_by_hand_and_its_macro_mean_is_the_f1_metric():
    labels = ["neg", "neu", "pos"]
    gold, predicted = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]
    kind = TASK_TYPES["classification"]
    got = kind.per_label(gold, predicted, ["accuracy"], labels, {})
    assert got == {"neg": figures(1 / 2, 1 / 2, 1 / 2, 2), "neu": figures(1 / 2, 1, 2 / 3, 1),
                   "pos": figures(1, 2 / 3, 4 / 5, 3)}
    assert sum(f["f1"] for f in got.values()) / 3 == pytest.approx(kind.score(gold, predicted, ["f1"], labels)["f1"])
    # the labels macro F1 averages: one only predicted is there (support 0), one in neither is not
    gold, predicted = [0, 0, 1], [0, 1, 1]
    got = kind.per_label(gold, predicted, ["accuracy"], ["a", "b", "c"], {})
    assert got == {"a": figures(1, 1 / 2, 2 / 3, 2), "b": figures(1 / 2, 1, 2 / 3, 1)}
    assert kind.per_label([0, 0, 1], [0, 2, 1], ["accuracy"], ["a", "b", "c"], {})["c"] == figures(0, 0, 0, 0)  # predicted
    for gold, predicted in (([0, 0, 1], [0, 1, 1]), ([0, 0, 1], [0, 2, 1]), ([2, 2, 2], [0, 2, 2])):
        got = kind.per_label(gold, predicted, ["accuracy"], ["a", "b", "c"], {})
        macro = kind.score(gold, predicted, ["f1"], ["a", "b", "c"])["f1"]
        assert sum(f["f1"] for f in got.values()) / len(got) == pytest.approx(macro)


def test_multilabel_counts_each_labels_positives():
    kind = TASK_TYPES["multilabel"]
    # one label: its positives, not sklearn's reading of a 0/1 column as two classes
    assert kind.per_label([[1], [0], [1], [1]], [[1], [1], [0], [1]], ["micro_f1"], ["spam"], {"threshold": 0.4}) == \
        {"spam": {**figures(2 / 3, 2 / 3, 2 / 3, 3), "threshold": 0.4}}
    gold = [[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]]
    predicted = [[1, 0, 0], [0, 1, 1], [1, 1, 1], [0, 0, 0]]
    got = kind.per_label(gold, predicted, ["micro_f1"], ["a", "b", "c"], {"threshold": 0.5, "thresholds": [0.2, 0.5, 0.9]})
    assert [got[label]["threshold"] for label in "abc"] == [0.2, 0.5, 0.9]  # the tuned ones, which predicted
    for j, label in enumerate("abc"):
        column = [[row[j] for row in rows] for rows in (gold, predicted)]
        assert got[label]["f1"] == pytest.approx(f1_score(*column)) and got[label]["support"] == sum(column[0])
    macro = kind.score(gold, predicted, ["macro_f1"], ["a", "b", "c"])["macro_f1"]
    assert sum(f["f1"] for f in got.values()) / 3 == pytest.approx(macro)


def test_tagging_per_entity_type_and_per_tag_as_the_metrics_score_words():
    kind = TASK_TYPES["tagging"]
    labels = ["B-LOC", "B-ORG", "B-PER", "I-PER", "O"]
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "B-LOC", "B-PER"]]
    # the second sentence: its second word has no token (left out, with its gold LOC), its third was cut (O)
    predicted = [[2, 3, 4, 1], [1, None, -1]]
    assert kind.per_label(gold, predicted, ["seqeval"], labels + ["B-MISC"], {}) == {  # MISC in neither: left out
        "LOC": figures(0, 0, 0, 1), "ORG": figures(1 / 2, 1, 2 / 3, 1), "PER": figures(1, 1 / 2, 2 / 3, 2)}
    # tags without entity prefixes: per tag; a cut word is wrong when there is no O tag; a tag in neither is left out
    assert kind.per_label([["NOUN", "VERB", "PUNCT"]], [[0, 0, -1]], ["token_accuracy"],
                          ["NOUN", "PUNCT", "VERB", "ADJ"], {}) == \
        {"NOUN": figures(1 / 2, 1, 2 / 3, 1), "PUNCT": figures(0, 0, 0, 1), "VERB": figures(0, 0, 0, 1)}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_encoder):
    from conftest import write_recipe

    folder = tmp_path_factory.mktemp("per_label")
    tasks = tiny_tasks()
    tasks["ner"]["data"]["test"] = str(DATA / "ner_sample_dev.conll")
    recipe = write_recipe(folder, tiny_encoder, tasks=tasks, training={"steps": 6, "save_every": 6})
    train(load_recipe(recipe))
    return folder / "run"


def entities_in(path) -> dict[str, int]:
    tags = [line.split()[-1] for line in path.read_text().splitlines() if line.strip() and not line.startswith("-DOCSTART-")]
    counts = {}
    for kind, _, _ in get_entities(tags):
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def test_metrics_json_has_every_labelled_tasks_figures_per_split(run):
    metrics = json.loads((run / "metrics.json").read_text())
    per_label = metrics["per_label"]
    assert set(per_label) == {"sentiment", "ner"}  # the regression task has no labels
    assert set(per_label["sentiment"]) == {"validation"} and set(per_label["ner"]) == {"validation", "test"}
    sentiment = per_label["sentiment"]["validation"]
    assert set(sentiment) == {"0", "1"}
    assert sum(f["support"] for f in sentiment.values()) == metrics["data"]["tasks"]["sentiment"]["validation"]["examples"]
    expected = entities_in(DATA / "ner_sample_dev.conll")
    for split in ("validation", "test"):
        assert {kind: f["support"] for kind, f in per_label["ner"][split].items() if f["support"]} == expected
    assert per_label["ner"]["validation"] == per_label["ner"]["test"]  # the same file, the same model


def test_evaluate_writes_them_and_prints_them_on_request(run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    trained = json.loads((run / "metrics.json").read_text())["per_label"]
    assert main(["evaluate", str(run / "model"), str(run / "recipe.yaml"), "--output", str(out)]) == 0
    assert "support" not in capsys.readouterr().out  # the table per label only on request
    written = json.loads(out.read_text())["per_label"]
    assert written == {name: {"validation": splits["validation"]} for name, splits in trained.items()}
    assert main(["evaluate", str(run / "model"), str(run / "recipe.yaml"), "--output", str(out), "--per-label",
                 "--tasks", "ner"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["task", "label", "precision", "recall", "f1",
                                                                        "support"])
    rows = [line.split() for line in lines[header + 1:] if line.startswith("ner ")]
    assert {row[1]: int(row[5]) for row in rows} == {k: f["support"] for k, f in written["ner"]["validation"].items()}


def test_the_printed_table_gives_a_multilabel_labels_threshold():
    from mtnlp.report import label_table

    f = {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1200}
    lines = label_table({"topics": {"arts": {**f, "threshold": 0.35}}, "sentiment": {"neg": f}}).splitlines()
    assert [line.split() for line in lines] == [
        ["task", "label", "precision", "recall", "f1", "support", "threshold"],
        ["topics", "arts", "0.5000", "1.0000", "0.6667", "1,200", "0.35"],
        ["sentiment", "neg", "0.5000", "1.0000", "0.6667", "1,200"]]
    assert label_table({"sentiment": {"neg": f}}).splitlines()[0].split()[-1] == "support"


def card_label_rows(card: str) -> dict[tuple[str, str], list[str]]:
    """{(task, label): [validation cell, test cell]} of a model card's per-label table."""
    from mtnlp.hub import card_rows

    return {(cells[0], cells[1]): cells[2:] for _, header, cells in card_rows(card.splitlines(), ("task", "label"))}


def test_the_model_card_folds_them_away_and_its_metrics_table_still_reads(run):
    from mtnlp.hub import table_metrics

    metrics = json.loads((run / "metrics.json").read_text())
    card = (run / "model" / "README.md").read_text()
    rows = card_label_rows(card)
    expected = {(task, label) for task, splits in metrics["per_label"].items() for figures in splits.values()
                for label in figures}
    assert set(rows) == expected
    for (task, label), cells in rows.items():
        for split, cell in zip(("validation", "test"), cells):
            f = metrics["per_label"][task].get(split, {}).get(label)
            assert cell == ("—" if f is None else
                            f"{f['precision']:.4f} / {f['recall']:.4f} / {f['f1']:.4f} ({f['support']:,})")
    assert card.index("<details>") < card.index("| task | label |") < card.index("</details>")
    assert table_metrics(card) == {task: {split: pytest.approx(values, abs=5e-5) for split, values in splits.items()}
                                   for task, splits in metrics["tasks"].items() if splits}  # serve's /info reads it


def test_a_card_gives_a_multilabel_labels_threshold_and_keeps_a_pipe_in_a_label():
    from mtnlp.hub import model_card
    from mtnlp.modeling import MultiTaskConfig

    tasks = {"topics": {"type": "multilabel", "labels": ["arts|crafts", "sport"], "dropout": 0.1, "threshold": 0.5}}
    per_label = {"topics": {"test": {"arts|crafts": {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1200,
                                                    "threshold": 0.35}}}}
    card = model_card(MultiTaskConfig(encoder={"model_type": "bert"}, tasks=tasks), {"tasks": {}, "per_label": per_label})
    assert card_label_rows(card) == {("topics", "arts|crafts"): ["—", "0.5000 / 1.0000 / 0.6667 (1,200; threshold 0.35)"]}
    assert "<details>" not in model_card(MultiTaskConfig(encoder={"model_type": "bert"}, tasks=tasks), {"tasks": {}})


def test_a_checkpoint_without_them_is_evaluated_again_at_the_end(run, tmp_path):
    """A checkpoint of an mtnlp before per_label resumed at its last step: validation is evaluated again."""
    before = json.loads((run / "metrics.json").read_text())
    state = run / "checkpoints" / "step-000006" / "trainer_state.json"
    kept = json.loads(state.read_text())
    assert kept["best_by_label"] == {name: splits["validation"] for name, splits in before["per_label"].items()}
    state.write_text(json.dumps({k: v for k, v in kept.items() if k != "best_by_label"}))
    train(load_recipe(run / "recipe.yaml", ["training.resume_from=latest"]))
    after = json.loads((run / "metrics.json").read_text())
    assert after["per_label"] == before["per_label"]  # fp32, the same batches


def test_the_label_table_aligns_wide_and_combining_characters():
    """CJK labels take two columns each and a combining accent none: padding by len() shifted their numbers."""
    from mtnlp.report import label_table

    figures = {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 3}
    table = label_table({"script": {"漢字": figures, "latin": figures, "cafe\u0301": figures}})
    ends = {line.split("  ")[1].strip(): line for line in table.splitlines()[1:]}
    columns = {label: sum(2 if "\u4e00" <= c <= "\u9fff" else 0 if c == "\u0301" else 1 for c in line)
               for label, line in ends.items()}
    assert len(set(columns.values())) == 1, table  # every row ends in the same column
