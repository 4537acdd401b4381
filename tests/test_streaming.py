"""Streamed hub data sets (data.streaming): batches read as training goes, sizes from the metadata or
data.size, labels from the ClassLabel feature, exact resume; StreamBatches on its own."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mtnlp.errors import UserError
from mtnlp.recipe import load_recipe
from mtnlp.recipes.multitask import train
from mtnlp.batches import StreamBatches

WORDS = {0: ["dull", "bad", "boring", "awful"], 1: ["great", "fine", "lovely", "superb"]}


def hub_folder(root: Path, train_rows: int, validation_rows: int = 40, sizes: bool = True, class_label: bool = True,
               filler: int = 0) -> Path:
    """A data set folder as the hub holds one (data files and a card whose YAML gives features and split
    sizes), which datasets.load_dataset reads like a hub id. `filler` pads each row's text with words."""
    folder = root / "hub-set"
    (folder / "data").mkdir(parents=True)
    for split, n in (("train", train_rows), ("validation", validation_rows)):
        with open(folder / "data" / f"{split}.jsonl", "w") as f:
            for i in range(n):
                label = i % 2
                text = f"a {WORDS[label][i % 4]} movie number {i}" + " and more" * filler
                f.write(json.dumps({"sentence": text, "label": label if class_label else ["neg", "pos"][label]}) + "\n")
    dtype = "\n    dtype:\n      class_label:\n        names:\n          '0': neg\n          '1': pos" if class_label \
        else "\n    dtype: string"
    splits = (f"  splits:\n  - name: train\n    num_bytes: 1\n    num_examples: {train_rows}\n"
              f"  - name: validation\n    num_bytes: 1\n    num_examples: {validation_rows}\n") if sizes else ""
    (folder / "README.md").write_text(
        "---\ndataset_info:\n  features:\n  - name: sentence\n    dtype: string\n  - name: label" + dtype + "\n"
        + splits + textwrap.dedent("""\
        configs:
        - config_name: default
          data_files:
          - split: train
            path: data/train.jsonl
          - split: validation
            path: data/validation.jsonl
        ---
        """))
    return folder


def streamed_task(folder: Path, **data) -> dict:
    return {"type": "classification", "data": {"hub": str(folder), "streaming": True, "train": "train",
                                               "validation": "validation", "text_column": "sentence", **data}}


# ---------------------------------------------------------------- StreamBatches alone


def numbered(count):
    """An example source: epoch e gives count examples, numbered and tagged with the epoch."""
    return lambda seed, epoch: ({"n": i, "epoch": epoch, "seed": seed} for i in range(count))


def take(batches, k):
    return [[(ex["epoch"], ex["n"]) for ex in next(batches)] for _ in range(k)]


def test_stream_batches_in_order_epoch_after_epoch():
    batches = StreamBatches(numbered(7), list, batch_size=3, seed=5)
    assert take(batches, 4) == [[(0, 0), (0, 1), (0, 2)], [(0, 3), (0, 4), (0, 5)], [(0, 6)], [(1, 0), (1, 1), (1, 2)]]
    assert batches.state_dict() == {"epoch": 1, "position": 1, "batch_size": 3, "offset": 0}


def test_stream_batches_share_a_round_between_processes():
    ranks = [StreamBatches(numbered(11), list, batch_size=2, seed=5, rank=r, world_size=2) for r in (0, 1)]
    got = [take(b, 3) for b in ranks]
    # rounds of 2 batches: (0-1 | 2-3), (4-5 | 6-7), (8-9 | 10): each process one batch of each round
    assert got[0] == [[(0, 0), (0, 1)], [(0, 4), (0, 5)], [(0, 8), (0, 9)]]
    assert got[1] == [[(0, 2), (0, 3)], [(0, 6), (0, 7)], [(0, 10)]]
    # 11 examples: the next round would hold nothing for rank 1, so both start epoch 1 together
    assert [take(b, 1) for b in ranks] == [[[(1, 0), (1, 1)]], [[(1, 2), (1, 3)]]]


def test_stream_batches_resume_exactly_from_their_state():
    source_calls = []

    def source(seed, epoch):
        source_calls.append(epoch)
        return numbered(10)(seed, epoch)

    first = StreamBatches(source, list, batch_size=3, seed=1)
    take(first, 5)  # into epoch 1
    state = first.state_dict()
    expected = take(first, 4)
    resumed = StreamBatches(source, list, batch_size=3, seed=1)
    resumed.load_state_dict(state)
    assert take(resumed, 4) == expected
    assert state == {"epoch": 1, "position": 1, "batch_size": 3, "offset": 0}


def test_an_epoch_far_from_the_size_a_stream_was_said_to_hold_is_said_once():
    """data.size 100,000 on a stream of 100: training went round it epoch after epoch, task sampling weighed the task
    by 100,000, metrics.json counted 100,000 examples, and nothing was said."""
    def said(size, batches=12, rank=0, state=None):  # 10 examples in batches of 3: an epoch is 4 batches
        stream = StreamBatches(numbered(10), list, batch_size=3, seed=1, rank=rank, name="org/x[train]", size=size)
        if state:
            stream.load_state_dict(state)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            take(stream, batches)
        return [str(w.message) for w in caught]

    assert said(1000) == ["org/x[train]: an epoch held 10 example(s), not the 1,000 its size says (data.size, or the "
                          "data set's metadata): task sampling weighs the task, and metrics.json counts its examples, "
                          "by that size; set data.size to the real count"]  # once, in 3 epochs
    assert said(11) == said(10) == said(None) == said(1000, rank=1) == []  # (within a tenth; under DDP, the first says it)
    assert said(1000, batches=4) == []  # the epoch's end not met yet
    part_way = {"epoch": 0, "position": 2, "batch_size": 3, "offset": 0}  # resumed: epoch 0's rest is not counted
    assert said(1000, batches=6, state=part_way) == [] and len(said(1000, batches=7, state=part_way)) == 1


@pytest.mark.parametrize("world", [1, 2])
def test_stream_batches_resumed_with_another_batch_size_take_the_rest_of_the_epoch(world):
    """The examples trained on stay trained on: the state counted rounds of the old batch size (read as rounds of
    the new one, 3 -> 5 skipped examples 9-14 and 3 -> 2 took 6-8 again)."""
    def run(batches, k):
        return [[(ex["epoch"], ex["n"]) for ex in next(b)] for _ in range(k) for b in batches]

    first = [StreamBatches(numbered(40), list, batch_size=3, seed=1, rank=r, world_size=world) for r in range(world)]
    head = run(first, 3)
    for new in (5, 2):
        resumed = [StreamBatches(numbered(40), list, batch_size=new, seed=1, rank=r, world_size=world)
                   for r in range(world)]
        for b in resumed:
            b.load_state_dict(first[0].state_dict(), written_by=world)
        rest = run(resumed, 40 // new // world + 2)
        epoch0 = [n for batch in head + rest for e, n in batch if e == 0]
        assert sorted(epoch0) == epoch0 == list(range(40)), new  # each example once, in the stream's order
        assert all(len(batch) == new for batch in rest[:(40 - 9 * world) // new // world * world])
        again = [StreamBatches(numbered(40), list, batch_size=new, seed=1, rank=r, world_size=world) for r in range(world)]
        for b, r in zip(again, resumed):  # and a resume from there (batch size unchanged) goes on exactly
            b.load_state_dict(resumed[0].state_dict(), written_by=world)
        assert run(again, 3) == run(resumed, 3)


def test_an_incomplete_last_round_is_shared_evenly():
    # 4 examples, 2 processes, batches of 4: one round, 2 examples each (not 4 and none)
    ranks = [StreamBatches(numbered(4), list, batch_size=4, seed=0, rank=r, world_size=2) for r in (0, 1)]
    assert [take(b, 2) for b in ranks] == [[[(0, 0), (0, 1)], [(1, 0), (1, 1)]], [[(0, 2), (0, 3)], [(1, 2), (1, 3)]]]
    # 7 examples, 3 processes, batches of 2: a full round (0-1 | 2-3 | 4-5), then 6 alone is left out
    ranks = [StreamBatches(numbered(7), list, batch_size=2, seed=0, rank=r, world_size=3) for r in range(3)]
    assert [take(b, 2) for b in ranks] == [[[(0, 0), (0, 1)], [(1, 0), (1, 1)]], [[(0, 2), (0, 3)], [(1, 2), (1, 3)]],
                                           [[(0, 4), (0, 5)], [(1, 4), (1, 5)]]]


@pytest.mark.parametrize("count,world", [(0, 1), (1, 2)])
def test_an_epoch_without_an_example_per_process_is_a_user_error(count, world):
    from mtnlp.errors import UserError

    with pytest.raises(UserError, match=rf"^org/x\[train\]: {count} example\(s\) in an epoch; .* per process \({world}\)$"):
        next(StreamBatches(numbered(count), list, batch_size=2, seed=0, world_size=world, name="org/x[train]"))


def test_a_stream_smaller_than_the_process_count_is_refused_at_start(make_recipe):
    """Its size is known up front (data.size or metadata): not only when the sampler first draws it, if ever."""
    from types import SimpleNamespace

    from mtnlp.train import training_batches

    stream = SimpleNamespace(size=1, source=SimpleNamespace(name="org/x[train]"))
    tasks = {"sentiment": SimpleNamespace(stream=stream, train_size=lambda: 1)}
    with pytest.raises(UserError, match=r"^org/x\[train\]: 1 example\(s\) in an epoch \(its size\); training needs "
                                        r"at least one per process \(2\)$"):
        training_batches(load_recipe(make_recipe()), tasks, SimpleNamespace(process_index=0, num_processes=2))


# ---------------------------------------------------------------- training on a streamed hub set


def test_training_on_a_streamed_set_reads_part_of_it(make_recipe, tmp_path, capsys):
    # bytes read by a run on a small and on a large copy of the set: the difference is what the large
    # one read of its training file (the rest - imports, model, validation split - is the same)
    def run(rows: int, name: str) -> tuple[int, int]:
        folder = hub_folder(tmp_path / name, train_rows=rows, filler=60)
        recipe = make_recipe(tasks={"stream": streamed_task(folder, shuffle_buffer=64)},
                             training={"steps": 6, "batch_size": 4}, output_dir=str(tmp_path / name / "run"))
        before = read_bytes()
        train(load_recipe(recipe))
        return read_bytes() - before, (folder / "data" / "train.jsonl").stat().st_size

    run(200, "warm-up")  # first imports
    small, _ = run(200, "small")
    large, size = run(100_000, "large")  # ~60 MB: datasets reads a JSON Lines file 10 MB at a time
    assert size > 50e6 and large - small < size / 3, (large, small, size)
    metrics = json.loads((tmp_path / "large" / "run" / "metrics.json").read_text())
    assert metrics["data"]["tasks"]["stream"]["train"] == {"examples": 100_000, "labels": 2, "streamed": True}
    assert set(metrics["tasks"]["stream"]["validation"]) == {"accuracy", "f1"}
    assert metrics["trained_on"]["stream"] == {"batches": 6, "examples": 24}
    assert "(streamed)" in capsys.readouterr().out
    # nothing was prepared into datasets' cache (only mtnlp's tokenised validation split is there)
    cached = Path(tmp_path.parent / "datasets-cache").rglob("*.arrow")
    assert [path for path in cached if path.parent.name != "mtnlp"] == []


def test_a_stream_far_smaller_than_its_data_size_is_said(make_recipe, tmp_path):
    folder = hub_folder(tmp_path, train_rows=20)  # 5 batches an epoch
    recipe = make_recipe(tasks={"stream": streamed_task(folder, size=1000)}, training={"steps": 7, "batch_size": 4})
    with pytest.warns(UserWarning, match=r"hub-set\[train\]: an epoch held 20 example\(s\), not the 1,000 its size"):
        train(load_recipe(recipe))


def read_bytes() -> int:
    return int(next(line for line in Path("/proc/self/io").read_text().splitlines() if line.startswith("rchar")).split()[1])


def test_streamed_training_resumes_exactly(make_recipe, tmp_path):
    folder = hub_folder(tmp_path, train_rows=18)  # 5 batches an epoch: about 8 of 16 micro-batches are its
    tasks = {"stream": streamed_task(folder, shuffle_buffer=16),
             "sentiment": {"type": "classification", "data": {"train": str(Path(__file__).parent / "data" /
                                                                            "sst2_sample.jsonl"),
                                                               "text_column": "sentence"}}}
    training = {"steps": 8, "save_every": 4, "keep_checkpoints": 5, "grad_accum": 2, "batch_size": 4}
    full = make_recipe(tasks=tasks, training=training, sampling={"strategy": "uniform"}, name="full.yaml")
    train(load_recipe(full))
    run, resumed = tmp_path / "run", tmp_path / "resumed"
    train(load_recipe(full, [f"output_dir={resumed}", f"training.resume_from={run}/checkpoints/step-000004"]))
    a = load_file(run / "checkpoints" / "step-000008" / "model.safetensors")
    b = load_file(resumed / "checkpoints" / "step-000008" / "model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    state = json.loads((run / "checkpoints" / "step-000008" / "trainer_state.json").read_text())
    assert state["batches"]["stream"]["epoch"] >= 1  # the stream went round, and resumed mid-epoch


def test_a_streamed_train_split_is_not_evaluated(make_recipe, tmp_path, capsys):
    from mtnlp.cli import main

    folder = hub_folder(tmp_path / "set", train_rows=40)
    recipe = make_recipe(tasks={"stream": streamed_task(folder)}, training={"steps": 2, "batch_size": 4})
    train(load_recipe(recipe))
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run" / "model"), str(recipe), "--split", "train"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "tasks.stream.data: the train split is streamed, which only training reads: evaluate a validation or test split")


def test_declared_size_wins_and_is_needed_without_metadata(make_recipe, tmp_path):
    folder = hub_folder(tmp_path, train_rows=30, sizes=False)
    recipe = make_recipe(tasks={"stream": streamed_task(folder)}, training={"steps": 1})
    with pytest.raises(UserError, match=r"tasks\.stream\.data\.size: .*does not say how many examples"):
        train(load_recipe(recipe))
    recipe = make_recipe(tasks={"stream": streamed_task(folder, size=1234)}, training={"steps": 1})
    train(load_recipe(recipe))
    facts = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]["tasks"]["stream"]["train"]
    assert facts["examples"] == 1234


def test_streamed_labels_need_a_class_label_or_label_names(make_recipe, tmp_path):
    folder = hub_folder(tmp_path, train_rows=30, class_label=False)
    recipe = make_recipe(tasks={"stream": streamed_task(folder)}, training={"steps": 1})
    with pytest.raises(UserError, match=r"tasks\.stream\.data\.label_names: the labels of a streamed split"):
        train(load_recipe(recipe))
    recipe = make_recipe(tasks={"stream": streamed_task(folder, label_names={"neg": "x", "pos": "x"})},
                         training={"steps": 1})
    with pytest.raises(UserError, match=r"hub-set\[train\]: the training split has 1 label\(s\) \(x\)"):
        train(load_recipe(recipe))
    recipe = make_recipe(tasks={"stream": streamed_task(folder, label_names={"neg": "negative", "pos": "positive"})},
                         training={"steps": 2})
    assert train(load_recipe(recipe)).model.config.tasks["stream"]["labels"] == ["negative", "positive"]


def test_a_streamed_label_column_that_is_not_there_is_named(make_recipe, tmp_path):
    folder = hub_folder(tmp_path, train_rows=30)  # a ClassLabel column "label"
    recipe = make_recipe(tasks={"stream": streamed_task(folder, label_column="stars")}, training={"steps": 1})
    with pytest.raises(UserError, match=r"tasks\.stream\.data\.label_column: .*hub-set\[train\] has no column 'stars' "
                                        r"\(found: sentence, label\)"):
        train(load_recipe(recipe))


def card_less_folder(root: Path, splits: dict[str, list[dict]]) -> Path:
    """A data set folder of JSONL files and no card: datasets names the splits after the files."""
    folder = root / "plain-set"
    (folder / "data").mkdir(parents=True)
    for split, rows in splits.items():
        (folder / "data" / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def choice_row(i: int, choices: int) -> dict:
    return {"text": f"item {i}", "choices": ["yes", "no", "maybe"][:choices], "label": i % 2}


def qa_row(i: int, answered: bool) -> dict:
    answers = {"text": ["Ann"], "answer_start": [0]} if answered else {"text": [], "answer_start": []}
    return {"id": f"q{i}", "question": "Who met Bob?", "context": "Ann met Bob.", "answers": answers}


@pytest.mark.parametrize("kind, odd_row, message", [
    # a row's number is in read order: its first text says which one it is
    ("multiple_choice", choice_row(5, 3), r"plain-set\[train\]: row \d in epoch 0's shuffled order \('item \d'\): \d "
                                          r"choices, but .*plain-set\[train\]: row \d in epoch 0's shuffled order "
                                          r"\('item \d'\) has \d: every example of a split needs the same number of choices"),
    ("extractive_qa", qa_row(5, False), r"plain-set\[train\]: row \d in epoch 0's shuffled order \('q5'\): question "
                                        "'q5' has no answer"),
])
def test_a_streamed_split_is_checked_as_it_is_read(make_recipe, tmp_path, kind, odd_row, message):
    """The checks across a split's examples (TaskType.checked) hold for a streamed one, as a
    one-line error naming the rows, not a failure in padding a batch."""
    good = [choice_row(i, 2) if kind == "multiple_choice" else qa_row(i, True) for i in range(8)]
    folder = card_less_folder(tmp_path, {"train": good[:5] + [odd_row] + good[6:], "validation": good})
    task = {"type": kind, "data": {"hub": str(folder), "streaming": True, "train": "train", "validation": "validation",
                                   "size": 8}}
    with pytest.raises(UserError, match=message) as info:
        train(load_recipe(make_recipe(tasks={"t": task}, training={"steps": 8, "batch_size": 4})))
    assert "\n" not in str(info.value)
    good_only = {**task, "data": {**task["data"], "train": "validation"}}
    assert train(load_recipe(make_recipe(tasks={"t": good_only}, training={"steps": 4, "batch_size": 4}))).model


@pytest.mark.parametrize("data, key", [
    ({"train": "x.jsonl", "streaming": True}, "streaming"),
    ({"hub": "some/set", "train": "train", "size": 10}, "size"),
    ({"hub": "some/set", "train": "train", "streaming": True, "validation_from_train": 0.1}, "validation_from_train"),
    ({"hub": "some/set", "train": "train[:90%]", "streaming": True}, "train"),
    ({"hub": "some/set", "train": "train", "validation": "train[90%:]", "streaming": True}, "validation"),
])
def test_streaming_recipe_mistakes(make_recipe, data, key):
    recipe = make_recipe(tasks={"t": {"type": "classification", "data": data}})
    with pytest.raises(UserError, match=rf"tasks\.t\.data\.{key}"):
        load_recipe(recipe)


@pytest.mark.parametrize("before,after", [(1, 2), (2, 1), (2, 3)])
def test_a_stream_resumed_with_another_number_of_processes_goes_on_where_it_was(before, after):
    writers = [StreamBatches(numbered(41), list, batch_size=2, seed=0, rank=r, world_size=before) for r in range(before)]
    taken = [n for _ in range(3) for w in writers for _, n in take(w, 1)[0]]
    readers = [StreamBatches(numbered(41), list, batch_size=2, seed=0, rank=r, world_size=after) for r in range(after)]
    for reader in readers:
        reader.load_state_dict(writers[0].state_dict(), written_by=before)
    rest = []
    while readers[0].epoch == 0:
        rest += [n for reader in readers for epoch_, n in take(reader, 1)[0] if epoch_ == 0]
    again = len(taken) - 3 * before // after * after * 2  # examples of a round cut in two are read again
    assert rest[:again] == taken[len(taken) - again:]
    assert taken + rest[again:] == list(range(len(taken) + len(rest) - again))
    assert len(taken) + len(rest) - again > 41 - after  # a last round with fewer examples than processes is left out


# ---------------------------------------------------------------- pinned by mutation testing (mutants no test killed)


def test_the_epoch_after_a_resume_with_another_batch_size_starts_at_its_first_example():
    def numbered(seed, epoch):
        return ({"n": i, "epoch": epoch} for i in range(10))

    first = StreamBatches(numbered, list, batch_size=3, seed=1)
    next(first)  # 0-2 taken in batches of 3
    resumed = StreamBatches(numbered, list, batch_size=2, seed=1)
    resumed.load_state_dict(first.state_dict())
    seen = [(ex["epoch"], ex["n"]) for _ in range(6) for ex in next(resumed)]
    assert seen[:7] == [(0, n) for n in range(3, 10)] and seen[7:] == [(1, 0), (1, 1), (1, 2), (1, 3)]


def test_a_streamed_tagging_tag_set_with_a_tag_without_a_prefix_is_refused_before_reading(make_recipe, tmp_path):
    """A streamed split's tags come from data.label_names: MISC beside B-PER is refused as a read split's is."""
    rows = [{"tokens": ["Ann", "likes", "Linux"], "tags": ["B-PER", "O", "MISC"]}] * 4
    folder = card_less_folder(tmp_path, {"train": rows, "validation": rows})
    task = {"type": "tagging", "data": {"hub": str(folder), "streaming": True, "train": "train", "validation":
                                        "validation", "size": 4, "label_names": {"B-PER": "B-PER", "O": "O",
                                                                                  "MISC": "MISC"}}}
    with pytest.raises(UserError, match=r"^\S*plain-set\[train\]: tag 'MISC' has no B-/I- prefix, beside entity tags "
                                        r"such as 'B-PER'"):
        train(load_recipe(make_recipe(tasks={"ner": task}, training={"steps": 2, "batch_size": 2})))
