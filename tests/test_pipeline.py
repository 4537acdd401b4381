"""MultiTaskPipeline, `mtnlp predict` and `mtnlp export` on a small saved multi-task model."""

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from conftest import DATA, FOUR_TASKS as TASKS, SHARED, minilm_path, read_examples, save_model
from transformers import AutoTokenizer

from mtnlp import MultiTaskModel, MultiTaskPipeline
from mtnlp.tasks.tagging import first_subtokens
from mtnlp.tasks.tagging import iob_spans
from mtnlp.spec import DataSpec

TEXTS = ["John Smith works for the United Nations in New York .", "a gorgeous , witty , seductive movie .",
         "Who was Galileo ?", "", "   ", "Zürich’s café — naïve résumé!"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_encoder):
    return save_model(tmp_path_factory.mktemp("mt-model"), tiny_encoder, TASKS)


def test_predicts_every_head_with_the_right_shapes(model_dir):
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    out = pipe(TEXTS[0], return_all_scores=True)
    assert set(out) == set(TASKS)
    assert out["sentiment"]["label"] in ("negative", "positive") and 0 <= out["sentiment"]["score"] <= 1
    assert sum(out["sentiment"]["scores"].values()) == pytest.approx(1, abs=1e-5)
    assert isinstance(out["score"]["value"], float)
    words = [w["word"] for w in out["pos"]]
    assert words == TEXTS[0].split()
    for w in out["pos"]:
        assert TEXTS[0][w["start"]:w["end"]] == w["word"] and w["tag"] in TASKS["pos"]["labels"]
    for span in out["ner"]:
        assert TEXTS[0][span["start"]:span["end"]] == span["text"]
        assert span["type"] in ("PER", "ORG", "LOC", "MISC") and 0 <= span["score"] <= 1


def test_one_encoder_pass_per_batch(model_dir):
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32", batch_size=4)
    calls = []
    pipe.model.encoder.register_forward_hook(lambda *a: calls.append(1))
    pipe(TEXTS)
    assert len(calls) == 2  # 6 texts, batches of 4


def test_batch_equals_single_and_task_selection(model_dir):
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32", batch_size=3)
    batch = pipe(TEXTS)
    for text, result in zip(TEXTS, batch):
        single = pipe(text)
        assert single["sentiment"]["label"] == result["sentiment"]["label"]
        assert single["sentiment"]["score"] == pytest.approx(result["sentiment"]["score"], abs=1e-5)
        assert single["score"]["value"] == pytest.approx(result["score"]["value"], abs=1e-5)
        assert [w["tag"] for w in single["pos"]] == [w["tag"] for w in result["pos"]]
        assert [(s["start"], s["end"], s["type"]) for s in single["ner"]] == \
               [(s["start"], s["end"], s["type"]) for s in result["ner"]]
    only = pipe(TEXTS[:2], tasks=["score"])
    assert [set(r) for r in only] == [{"score"}, {"score"}]
    with pytest.raises(ValueError, match=r"^tasks: the model has no task 'nope' \(it has: sentiment, score, ner, pos\)$"):
        pipe("x", tasks=["nope"])


def test_words_the_tokenizer_removes_get_no_tag_and_do_not_shift_the_others(model_dir):
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    plain, text = "John works in Paris .", "John \u200b works in \u00ad Paris ."
    words = [(w["word"], text[w["start"]:w["end"]]) for w in pipe(text)["pos"]]
    assert words == [(w, w) for w in plain.split()]
    assert [w["tag"] for w in pipe(text)["pos"]] == [w["tag"] for w in pipe(plain)["pos"]]


def test_a_text_split_into_words_gets_one_tag_per_word_from_each_tagging_head(model_dir):
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    words = ["John", "Smith", "\u200b", "works", "in", "New", "York", "."]
    result = pipe({"words": words})
    assert set(result) == {"ner", "pos"}  # the tagging heads: sequence heads read texts
    for task in ("ner", "pos"):
        assert [w["word"] for w in result[task]] == words
        assert (result[task][2]["tag"], result[task][2]["score"]) == (None, None)  # a word with no token
    by_text = pipe(" ".join(w for w in words if w != "\u200b"))["pos"]  # the same words in a text: the same tags
    assert [w["tag"] for w in by_text] == [w["tag"] for w in result["pos"] if w["tag"]]
    spaced = pipe({"words": ["New York", "is", "big"]})["pos"]  # a word with a space stays one, as in a JSON corpus
    assert [w["word"] for w in spaced] == ["New York", "is", "big"] and all(w["tag"] for w in spaced)
    with pytest.warns(UserWarning, match="truncated \\(inputs\\[0\\]\\): the words it cuts off get no tags"):
        cut = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32", max_length=8)({"words": ["word"] * 20})
    assert len(cut["pos"]) == 20 and cut["pos"][0]["tag"] and cut["pos"][10]["tag"] is None
    with pytest.raises(ValueError, match=r"^inputs\[0\]: a text split into words, but no requested task reads it"):
        pipe({"words": ["a"]}, tasks=["sentiment"])
    with pytest.raises(ValueError, match=r"^inputs\[0\].words\[1\]: expected a word"):
        pipe({"words": ["a", ""]})
    assert pipe({"words": []}) == {"ner": [], "pos": []}  # as an empty text gets empty tag lists


@pytest.mark.parametrize("native_bf16", [True, False], ids=["cpu_with_bf16", "avx2_only_cpu"])
def test_a_model_in_half_precision_runs_in_its_own_dtype_where_that_runs(model_dir, monkeypatch, native_bf16):
    """Autocast to another half type would mix dtypes: on a CPU with native bf16 (auto: bf16 autocast) fp16
    weights failed in layer_norm. fp16 runs as fp32 on a CPU (2-5x slower than fp32 in fp16): fp16 weights are
    cast to fp32, under bf16 autocast where that runs. Where auto picks fp32, any half weights are cast to fp32."""
    from mtnlp import precision as policy

    monkeypatch.setattr(policy, "cpu_native", lambda: (native_bf16, "AMX" if native_bf16 else "no AMX"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for asked in ("auto", "bf16"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pipe = MultiTaskPipeline(MultiTaskModel.from_pretrained(model_dir).half(), tokenizer, precision=asked)
        assert {p.dtype for p in pipe.model.parameters()} == {torch.float32}
        assert pipe.precision.name == ("bf16" if native_bf16 or asked == "bf16" else "fp32")
        assert pipe.precision.reason.endswith("weights cast to fp32" + (" (fp16 runs as fp32 on a CPU)"
                                                                        if pipe.precision.name == "bf16" else ""))
        assert [str(w.message) for w in caught if "weights are fp16" in str(w.message)] == []
        assert set(pipe(TEXTS[0])) == set(TASKS)
    pipe = MultiTaskPipeline(MultiTaskModel.from_pretrained(model_dir).to(torch.bfloat16), tokenizer, precision="fp32")
    assert pipe.precision.name == "fp32" and {p.dtype for p in pipe.model.parameters()} == {torch.float32}  # cast
    for precision in ("bf16", "fp32"):  # a bf16 encoder, fp32 heads: autocast, or all cast to fp32
        mixed = MultiTaskModel.from_pretrained(model_dir)
        mixed.encoder.to(torch.bfloat16)
        assert set(MultiTaskPipeline(mixed, tokenizer, precision=precision)(TEXTS[0])) == set(TASKS)


def test_a_regression_head_computes_in_fp32_under_bf16_autocast(model_dir):
    """Under bf16 autocast (auto on a CPU with native bf16) a regression head's value was a bf16 number: in
    steps of 1/128 near 1. It runs in fp32 on the states of the encoder's bf16 matmuls; the others in bf16."""
    model = MultiTaskModel.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model.shared_states(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
        logits = model.forward_heads(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
    assert {t: v.dtype for t, v in logits.items()} == {t: torch.float32 if t == "score" else torch.bfloat16 for t in TASKS}
    with torch.no_grad():
        expected = model.heads["score"](model.task_top(hidden.float(), enc["attention_mask"], "score"),
                                        enc["attention_mask"])
    torch.testing.assert_close(logits["score"], expected, rtol=1e-6, atol=1e-6)
    values = [out["score"]["value"] for out in MultiTaskPipeline(model, tokenizer, precision="bf16")(TEXTS)]
    assert any(torch.tensor(v).to(torch.bfloat16).item() != v for v in values), values


def test_fp32_runs_fp32_inside_the_callers_own_autocast(model_dir):
    """A pipeline in fp32 called inside a user's bf16 autocast (their own eval loop): the answers are fp32's,
    not bf16's, as its precision says."""
    pipe = MultiTaskPipeline.from_pretrained(model_dir, precision="fp32")
    alone = pipe(TEXTS, return_all_scores=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = pipe(TEXTS, return_all_scores=True)
        assert torch.is_autocast_enabled("cpu")  # the caller's autocast is theirs again after the call
    assert inside == alone


def test_arguments_of_the_wrong_kind_are_type_errors_naming_them(model_dir):
    """Not taken for config.json's keys (tasks=, a misspelt batch_size), nor read as a path (a model object)."""
    with pytest.raises(TypeError, match=r"^from_pretrained\(\) got an unexpected keyword argument 'tasks': each call "
                                        r"takes it, pipe\(inputs, tasks=\.\.\.\)$"):
        MultiTaskPipeline.from_pretrained(model_dir, tasks=["sentiment"])
    with pytest.raises(TypeError, match=r"^from_pretrained\(\) got an unexpected keyword argument 'batchsize'$"):
        MultiTaskPipeline.from_pretrained(model_dir, batchsize=4)
    model = MultiTaskModel.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with pytest.raises(TypeError, match=r"^name_or_path: expected a model folder or hub id, got MultiTaskModel \(a "
                                        r"model object: MultiTaskPipeline\(model, tokenizer\)\)$"):
        MultiTaskPipeline.from_pretrained(model)
    with pytest.raises(TypeError, match=r"^model: expected a MultiTaskModel, got str \(MultiTaskPipeline.from_pretrained"):
        MultiTaskPipeline(str(model_dir), tokenizer)
    for wrong in (None, str(model_dir)):
        with pytest.raises(TypeError, match=r"^tokenizer: expected a tokenizer \(AutoTokenizer.from_pretrained"):
            MultiTaskPipeline(model, wrong)
    # torch.compile's wrapper is a model (the pipeline calls forward_heads, which it passes to the model)
    assert MultiTaskPipeline(torch.compile(model), tokenizer, precision="fp32")(TEXTS[0]) == \
        MultiTaskPipeline(model, tokenizer, precision="fp32")(TEXTS[0])


def test_the_pipelines_warnings_name_the_callers_line(model_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MultiTaskPipeline.from_pretrained(model_dir, precision="fp16", max_length=100_000)
    assert len(caught) == 2 and {Path(w.filename) for w in caught} == {Path(__file__)}, [(w.filename, w.lineno) for w in caught]


def test_a_model_loaded_with_a_config_of_other_tasks_names_the_task(model_dir, tmp_path):
    from mtnlp import MultiTaskConfig
    from mtnlp.modeling import ConfigMismatch

    config = MultiTaskConfig.from_pretrained(model_dir)
    dropped = next(iter(config.tasks))
    del config.tasks[dropped]
    with pytest.raises(ConfigMismatch, match=rf"^{re.escape(str(model_dir))}: a task '{dropped}' the weights hold, which "
                                             r"the config has not \(load it with its own config; choose heads per call"):
        MultiTaskModel.from_pretrained(model_dir, config=config)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model").symlink_to(model_dir)
    from mtnlp.errors import UserError

    with pytest.raises(UserError, match=rf"^{re.escape(str(run))}: a run folder; give its model folder"):
        MultiTaskModel.from_pretrained(run)
    assert sorted(MultiTaskModel.from_pretrained(run, subfolder="model").heads) == sorted([*config.tasks, dropped])


def test_a_plain_encoder_is_not_a_multi_task_model(tiny_encoder):
    from mtnlp.errors import UserError

    with pytest.raises(UserError, match="a bert model, not an mtnlp multi-task model"):
        MultiTaskPipeline.from_pretrained(tiny_encoder)


def rounded(value):
    """Predictions with their scores to 4 decimals: equal when only float noise differs."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return [rounded(v) for v in value] if isinstance(value, list) else value


@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_one_pipeline_called_from_several_threads_answers_each_call_as_alone(model_dir):
    """A fast tokenizer's truncation and padding are state that each call sets: threads in one pipeline at once
    encoded with each other's (long texts tagged past max_length, a batch left unpadded)."""
    from concurrent.futures import ThreadPoolExecutor

    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    lists = [[t for t in TEXTS if t.strip()], [" ".join(f"w{i}" for i in range(n)) for n in range(60, 100, 8)]]
    alone = [rounded(pipe(texts)) for texts in lists]
    assert all(len(r["pos"]) < 60 for r in alone[1])  # cut at max_length

    def calls(which):
        return [rounded(pipe(lists[which])) for _ in range(40)]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(calls, [0, 1, 0, 1]))
    for which, results in zip([0, 1, 0, 1], answers):
        assert all(result == alone[which] for result in results)


def test_any_sequence_of_inputs_is_answered_as_a_list_of_them(model_dir):
    """A generator, a datasets column, a numpy array: as transformers' pipelines take them."""
    import datasets
    import numpy as np

    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    texts = TEXTS[:3]
    alone = rounded(pipe(texts))
    assert rounded(pipe(t for t in texts)) == alone
    assert rounded(pipe(datasets.Dataset.from_dict({"text": texts})["text"])) == alone
    assert rounded(pipe(np.array(texts))) == alone
    import pandas

    table = pandas.DataFrame({"sentence": texts, "label": [0, 1, 0]})  # iterated: its column names
    assert rounded(pipe(table["sentence"])) == alone
    for value, name in (({"a", "b"}, "set"), (b"text", "bytes"), (7, "int"), (table, "DataFrame")):
        with pytest.raises(TypeError, match=f"^inputs: expected a text, a dict or a list of those, got {name}$"):
            pipe(value)
    # the other arguments' types are checked too (props2 walk): return_all_scores="no" gave scores, strict="no" was
    # strict, tasks=False "'bool' object is not iterable"
    for kwargs, said in ((dict(tasks=False), "tasks: expected a task name or a list of names, got False"),
                         (dict(tasks=[["sentiment"]]), "tasks: expected a task name or a list of names, got [['sentiment']]"),
                         (dict(tasks={"sentiment": 1}), "tasks: expected a task name or a list of names, got {'sentiment': 1}"),
                         (dict(return_all_scores="no"), "return_all_scores: expected True or False, got 'no'"),
                         (dict(strict="no"), "strict: expected True or False, got 'no'")):
        with pytest.raises(TypeError, match=f"^{re.escape(said)}$"):
            pipe(texts, **kwargs)
    assert rounded(pipe(texts, tasks=(t for t in ["sentiment"]), return_all_scores=np.bool_(False))) == \
        rounded(pipe(texts, tasks=["sentiment"]))


def test_a_pipeline_can_be_copied_and_pickled(model_dir):
    """For copy.deepcopy, a multiprocessing pool, Spark or Ray closures; the copy has a lock of its own."""
    import copy
    import pickle

    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    alone = rounded(pipe(TEXTS[:2]))
    for other in (copy.deepcopy(pipe), pickle.loads(pickle.dumps(pipe))):
        assert rounded(other(TEXTS[:2])) == alone and other._lock is not pipe._lock
    shallow = copy.copy(pipe)  # the same tokenizer: the same lock, or two threads race again
    assert shallow.tokenizer is pipe.tokenizer and shallow._lock is pipe._lock and rounded(shallow(TEXTS[:2])) == alone
    assert MultiTaskPipeline(pipe.model, pipe.tokenizer, precision="fp32")._lock is pipe._lock  # one tokenizer, one lock


def test_a_pipeline_on_a_training_model_answers_without_dropout_and_leaves_it_training(model_dir):
    """A check in the middle of a training loop (a copied recipe, one's own loop) must not turn dropout off for
    the rest of training; its answers are the eval-mode model's."""
    model = MultiTaskModel.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    expected = rounded(MultiTaskPipeline(model, tokenizer, precision="fp32")(TEXTS[:2]))
    model.train()
    pipe = MultiTaskPipeline(model, tokenizer, precision="fp32")
    assert model.training  # built on it: still training
    assert rounded(pipe(TEXTS[:2])) == expected == rounded(pipe(TEXTS[:2]))  # no dropout in the calls
    assert model.training and all(m.training for m in model.modules())
    model.encoder.eval()  # a frozen encoder kept without dropout, heads training: each module keeps its mode
    assert rounded(pipe(TEXTS[:2])) == expected
    assert not any(m.training for m in model.encoder.modules()) and all(m.training for m in model.heads.modules())


def test_pipelines_on_other_tokenizers_of_one_training_model_take_turns_with_its_mode(model_dir):
    """Calls take turns per tokenizer (its state) and per model (its mode): with a turn per tokenizer only, one
    call restored the training mode while another ran, which then answered with dropout."""
    import threading

    model = MultiTaskModel.from_pretrained(str(model_dir))
    pipes = [MultiTaskPipeline(model, AutoTokenizer.from_pretrained(str(model_dir)), precision="fp32") for _ in range(4)]
    expected = rounded(pipes[0](TEXTS[:3] * 8))
    model.train()
    answers = []

    def ask(pipe):
        for _ in range(15):
            answers.append(rounded(pipe(TEXTS[:3] * 8)))

    threads = [threading.Thread(target=ask, args=(pipe,)) for pipe in pipes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 60 and all(answer == expected for answer in answers)
    assert all(m.training for m in model.modules())


def test_empty_and_long_texts(model_dir):
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    empty = pipe("")
    assert empty["pos"] == [] and empty["ner"] == [] and empty["sentiment"]["label"] in ("negative", "positive")
    long_text = " ".join(["word"] * 100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = pipe(long_text)
    assert [str(w.message) for w in caught if "truncated" in str(w.message)] == [
        "1 input(s) longer than max_length=32 tokens were truncated (inputs[0]): sequence heads read only what "
        "fits; the words it cuts off get no tags"]
    assert 0 < len(out["pos"]) < 100  # words past max_length=32 tokens get no tag
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe(long_text, tasks=["sentiment"])  # no tagging head asked for: nothing said of tags
    assert [str(w.message) for w in caught if "truncated" in str(w.message)] == [
        "1 input(s) longer than max_length=32 tokens were truncated (inputs[0]): sequence heads read only what fits"]
    with warnings.catch_warnings(record=True) as caught:  # one warning per call, naming the inputs cut
        warnings.simplefilter("always")
        pipe(["short", long_text, {"text": "short", "text_pair": long_text}, long_text], tasks=["sentiment", "pos"],
             strict=False)
    assert [str(w.message) for w in caught if "truncated" in str(w.message)] == [
        "3 input(s) longer than max_length=32 tokens were truncated (inputs[1], inputs[2], inputs[3]): sequence "
        "heads read only what fits (of a pair, the longer text is cut first, down to the other's length, then "
        "both); the words it cuts off get no tags"]


def test_pipeline_matches_model_on_training_style_tokenisation(model_dir):
    """Classification logits equal a forward pass on tokenizer(text), as the trainer tokenises."""
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    texts = [ex["text"] for ex in read_examples(DATA / "sst2_sample.jsonl", DataSpec(text_column="sentence"),
                                                "classification")][:20]
    enc = pipe.tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        probs = pipe.model(**enc, task="sentiment").logits.softmax(-1)
    for text, p, out in zip(texts, probs, pipe(texts, return_all_scores=True)):
        assert out["sentiment"]["scores"]["positive"] == pytest.approx(float(p[1]), abs=1e-5), text


def test_bf16_pipeline_agrees_with_fp32(model_dir):
    fp32 = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")(TEXTS[:3])
    bf16 = MultiTaskPipeline.from_pretrained(str(model_dir), precision="bf16")(TEXTS[:3])
    for a, b in zip(fp32, bf16):
        assert a["score"]["value"] == pytest.approx(b["score"]["value"], abs=0.05)


def conll_sentences(path, limit=None):
    return read_examples(path, DataSpec(), "tagging")[:limit]


def spans_of(tokens, tags):
    text, offsets, position = "", [], 0
    for token in tokens:
        offsets.append((token, (position, position + len(token))))
        position += len(token) + 1
    text = " ".join(tokens)
    return text, iob_spans(tags, [1.0] * len(tags), offsets, text)


def gold_entities(tokens, tags):
    entities, current = [], None
    for token, tag in zip(tokens, tags):
        if tag.startswith("B-") or tag == "O":
            if current:
                entities.append(current)
            current = (tag[2:], [token]) if tag.startswith("B-") else None
        else:
            current[1].append(token)
    if current:
        entities.append(current)
    return [(kind, " ".join(words)) for kind, words in entities]


@pytest.mark.parametrize("path", [DATA / "ner_sample.conll", SHARED / "conll2003" / "valid.txt"])
def test_iob_spans_offsets_on_conll_sentences(path):
    if not path.exists():
        pytest.skip("../shared/data is not on this machine")
    checked = 0
    for ex in conll_sentences(path, 500):
        text, spans = spans_of(ex["tokens"], ex["tags"])
        assert [(s["type"], s["text"]) for s in spans] == gold_entities(ex["tokens"], ex["tags"])
        for s in spans:
            assert text[s["start"]:s["end"]] == s["text"]
        checked += len(spans)
    assert checked > 20


def test_iob_spans_stray_inside_tag_starts_an_entity():
    words = [("a", (0, 1)), ("b", (2, 3)), ("c", (4, 5))]
    spans = iob_spans(["I-PER", "I-LOC", "I-LOC"], [0.5, 0.2, 0.4], words, "a b c")
    assert [(s["type"], s["text"]) for s in spans] == [("PER", "a"), ("LOC", "b c")]
    assert spans[1]["score"] == pytest.approx(0.3)


def test_first_subtokens():
    assert first_subtokens([None, 0, 0, 1, 2, 2, None]) == [(1, 0), (3, 1), (4, 2)]
    assert first_subtokens([None, 0, 2, 2, None]) == [(1, 0), (2, 2)]  # word 1 has no token


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "mtnlp", *args], capture_output=True, text=True, input=stdin,
                          timeout=300)


def main_cli(monkeypatch, capsys, *args, stdin=""):
    """`mtnlp ARGS` in this process (a new one spends seconds importing torch): (status, stdout, stderr)."""
    import io

    from mtnlp.cli import main

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_cli_json_lines(model_dir, tmp_path, monkeypatch, capsys):
    inputs = tmp_path / "in.jsonl"
    # as Windows editors save it: a byte order mark and CRLF line ends (training's readers take it too)
    inputs.write_bytes(("\ufeff" + json.dumps({"id": 7, "text": TEXTS[1]}) + "\r\n" + json.dumps("") + "\r\n").encode())
    out = tmp_path / "out.jsonl"
    code, _, err = main_cli(monkeypatch, capsys, "predict", str(model_dir), TEXTS[0], "--tasks", "sentiment,ner",
                            "--input", str(inputs), "--output", str(out))
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == [TEXTS[0], TEXTS[1], ""]
    assert rows[1]["id"] == 7 and "id" not in rows[0]  # a line's other keys are echoed
    assert all(set(r["predictions"]) == {"sentiment", "ner"} for r in rows)
    # standard input (a real process's: test_predict_stdin_with_a_byte_that_is_not_utf8_...)
    words = json.dumps({"id": 8, "words": ["New York", "is", "big"]}) + "\n"
    code, out, _ = main_cli(monkeypatch, capsys, "predict", str(model_dir), "--input", "-", "--tasks", "pos", stdin=words)
    row = json.loads(out)
    assert code == 0 and row["id"] == 8 and [w["word"] for w in row["predictions"]["pos"]] == ["New York", "is", "big"]
    code, out, _ = main_cli(monkeypatch, capsys, "predict", str(model_dir), "--input", "-", "--tasks", "score",
                            stdin=json.dumps("hello") + "\n")
    assert code == 0 and json.loads(out)["predictions"]["score"]["value"] is not None


def test_predict_stdin_with_a_byte_that_is_not_utf8_names_its_line(model_dir):
    proc = subprocess.run([sys.executable, "-m", "mtnlp", "predict", str(model_dir), "--input", "-"],
                          input=b'"fine"\n"caf\xe9"\n', capture_output=True, timeout=300)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.decode().startswith("error: standard input:2: byte 0xe9 is not valid utf-8"), proc.stderr


def test_batch_size_below_one_or_not_an_integer_is_refused_when_built(model_dir):
    model = MultiTaskModel.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    for bad in (0, -1, 2.5, "8", True, None):
        with pytest.raises(ValueError, match=rf"^batch_size must be an integer of at least 1, got {re.escape(repr(bad))}$"):
            MultiTaskPipeline(model, tokenizer, batch_size=bad)
    import numpy as np

    assert MultiTaskPipeline(model, tokenizer, batch_size=np.int64(2)).batch_size == 2


def test_a_cuda_device_the_machine_lacks_is_a_value_error_naming_device(model_dir, monkeypatch):
    model = MultiTaskModel.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in (0, "cuda", "cuda:1", torch.device("cuda")):
        with pytest.raises(ValueError, match=rf"^device {re.escape(repr(device))}: this machine has no CUDA device"):
            MultiTaskPipeline(model, tokenizer, device=device)
    with pytest.raises(ValueError, match=r"^device 'gpu': .*\(e\.g\. 'cpu', 'cuda'"):
        MultiTaskPipeline(model, tokenizer, device="gpu")
    assert next(model.parameters()).device.type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"^device 'cuda:1': this machine has 1 CUDA device\(s\), cuda:0 to cuda:0"):
        MultiTaskPipeline(model, tokenizer, device="cuda:1")


def test_a_tokenizer_with_ids_past_the_embeddings_is_refused_when_built(model_dir):
    model = MultiTaskModel.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokenizer.add_tokens(["<brand-new>"])
    with pytest.raises(ValueError, match="without resizing the model"):
        MultiTaskPipeline(model, tokenizer)
    model.resize_token_embeddings(len(tokenizer))
    assert MultiTaskPipeline(model, tokenizer, precision="fp32")("a <brand-new> word")


def test_an_empty_task_list_is_refused_and_forward_heads_names_the_tasks(model_dir):
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    for empty in ([], (), set()):
        with pytest.raises(ValueError, match=r"^tasks: an empty list asks for no head; leave tasks out \(None\)"):
            pipe("text", tasks=empty)
    ids = torch.tensor([[101, 2000, 102]])
    with pytest.raises(ValueError, match="^tasks: an empty list asks for no head"):
        pipe.model.forward_heads(ids, tasks=[])
    with pytest.raises(KeyError, match=f"unknown task 'nope'; this model has: {', '.join(TASKS)}"):
        pipe.model.forward_heads(ids, tasks=["nope"])
    assert set(pipe.model.forward_heads(ids)) == set(TASKS)


def test_max_length_below_the_recipes_minimum_is_refused_and_past_the_positions_capped(model_dir):
    for bad in (0, 1, 7, 8.5, True):
        with pytest.raises(ValueError, match=rf"max_length must be an integer of at least 8, got {bad!r}"):
            MultiTaskPipeline.from_pretrained(str(model_dir), max_length=bad)
    with pytest.warns(UserWarning, match="max_length 1000: the encoder's position embeddings hold 128 tokens"):
        pipe = MultiTaskPipeline.from_pretrained(str(model_dir), max_length=1000)
    assert pipe.max_length == 128
    assert MultiTaskPipeline.from_pretrained(str(model_dir), max_length=8).max_length == 8


def test_a_slow_tokenizer_is_refused_where_a_model_is_loaded(model_dir, tmp_path):
    """A Python tokenizer has no word ids or offsets (tagging, QA, spans, the truncation check)."""
    import shutil

    from mtnlp.errors import UserError
    from mtnlp.pipeline import load_pretrained
    from transformers import BertTokenizerLegacy

    folder = shutil.copytree(model_dir, tmp_path / "slow")
    (folder / "tokenizer.json").unlink()
    slow = BertTokenizerLegacy(vocab_file=str(Path(minilm_path()) / "vocab.txt"))
    slow.save_pretrained(folder)
    problem = r"its tokenizer is a Python \(slow\) one, BertTokenizerLegacy; mtnlp needs a fast one \(tokenizer.json\)"
    with pytest.raises(UserError, match=rf"^{folder}: {problem}"):
        load_pretrained(str(folder))
    with pytest.raises(ValueError, match=rf"^{problem}"):
        MultiTaskPipeline(MultiTaskModel.from_pretrained(model_dir), slow)


@pytest.mark.parametrize("args,message", [
    (["x", "--tasks", "nope"], "no task 'nope'"),
    (["--input", "missing.jsonl"], "missing.jsonl: file not found"),
    ([], "give TEXT"),
])
def test_predict_cli_errors(model_dir, monkeypatch, capsys, args, message):
    code, _, err = main_cli(monkeypatch, capsys, "predict", str(model_dir), *args)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("line,said", [("9" * 5000, "Exceeds the limit (4300 digits)"),
                                       ("[" * 100_000 + "]" * 100_000, "arrays or objects nested too deeply"),
                                       ('{"text": "x", "id": NaN}', "NaN is not JSON (a missing value?)"),
                                       ('{"text": "x", "w": -Infinity}', "-Infinity is not JSON")])
def test_an_input_line_python_cannot_or_should_not_read_names_its_line(tmp_path, monkeypatch, line, said):
    """A huge integer or deep nesting was a traceback; NaN was read and echoed into output no JSON reader takes."""
    import io

    from mtnlp.cli import input_lines
    from mtnlp.errors import UserError

    path = tmp_path / "in.jsonl"
    path.write_text('"fine"\n' + line + "\n")
    with pytest.raises(UserError, match=rf"^{path}:2: invalid JSON: .*{re.escape(said)}"):
        input_lines(str(path))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    with pytest.raises(UserError, match=r"^standard input:2: invalid JSON"):
        input_lines("-")


@pytest.mark.parametrize("line", ["42 is the answer", "Hello, world", "a\tb"])
def test_a_plain_text_input_line_is_told_how_to_give_it(tmp_path, line):
    from mtnlp.cli import input_lines
    from mtnlp.errors import UserError

    path = tmp_path / "in.txt"
    path.write_text('"fine"\n' + line + "\n")
    with pytest.raises(UserError, match=rf"^{path}:2: invalid JSON: (Extra data|Expecting value) \(column \d+\); a line "
                                        r"is JSON: a "
                                        r"text is a JSON string \(plain text lines: jq -R \. FILE \| mtnlp predict"):
        input_lines(str(path))
    path.write_text('{"text": "x",\n')  # a JSON line cut short: no such hint
    with pytest.raises(UserError, match=r"invalid JSON: [^;]*$"):
        input_lines(str(path))


@pytest.mark.parametrize("line,said", [
    ('{"text": "x", "id": 1e400}', "invalid JSON: 1e400 is out of a number's range"),
    ('{"text": "a\tb"}', r"invalid JSON: a raw control character (a tab, a line break) inside a string: write it "
                         r"escaped (\t, \n, \u0000) (column 12)"),
    ('\ufeff{"text": "x"}', "invalid JSON: the line starts with a byte-order mark (U+FEFF), as files joined with cat "
                            "leave it: remove it"),
    ('{"text": "a\rb"}', r"invalid JSON: a string not closed on its line, from column 10 (a raw line break inside it? "
                         r"write it escaped: \n, \r)"),
    ('{"text": "x", "predictions": {"a": 1}}', 'the line has a "predictions" key, which predict writes its answers '
                                               "under: rename or drop it (e.g. jq -c 'del(.predictions)')")])
def test_an_input_line_whose_value_predict_would_garble_or_lose_names_its_line(tmp_path, monkeypatch, line, said):
    """1e400 was read as inf and echoed as Infinity (not JSON; a choice's text "inf"); a line's own "predictions"
    was replaced without a word; a raw tab's message ended in "at"; the BOM of a second file joined by cat was
    told it was plain text."""
    import io

    from mtnlp.cli import input_lines
    from mtnlp.errors import UserError

    path = tmp_path / "in.jsonl"
    path.write_text('"fine"\n' + line + "\n", encoding="utf-8")
    for source, name in ((str(path), str(path)), ("-", "standard input")):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
        with pytest.raises(UserError) as e:
            input_lines(source)
        assert str(e.value) == f"{name}:2: {said}"


def test_old_mac_line_ends_are_read_alike_from_a_file_and_from_standard_input(tmp_path, monkeypatch):
    import io

    from mtnlp.cli import input_lines

    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "one"}\r{"text": "two"}\r"three"\r\n\r\n"four"\n')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    read = [[(item, where.rsplit(":", 1)[1]) for item, where, _ in input_lines(source)] for source in (str(path), "-")]
    assert read[0] == read[1] == [("one", "1"), ("two", "2"), ("three", "3"), ("four", "5")]


def test_standard_input_closed_is_one_line(monkeypatch):
    from mtnlp.cli import input_lines
    from mtnlp.errors import UserError

    monkeypatch.setattr(sys, "stdin", None)  # `mtnlp predict M --input - <&-`: an AttributeError traceback
    with pytest.raises(UserError, match=r"^--input -: standard input is closed: give --input FILE"):
        input_lines("-")


@pytest.mark.parametrize("line,said", [('{"words": ["a", ""]}', 'words[1]: expected a word'),
                                       ('{"words": ["I", "have", 3]}',  # a corpus's number token: its text
                                        'words[2]: expected a word: a string, got the number 3: write it as text, "3"'),
                                       ('{"words": "a b"}', "words: expected a list of words"),
                                       ('{"words": ["a"], "text": "a"}', '"words" beside "text"'),
                                       ('{"wrods": ["a"]}', 'a text split into words {"words": [...]} (tagging)')])
def test_a_words_line_that_is_not_a_list_of_words_names_its_line(tmp_path, line, said):
    from mtnlp.cli import input_lines
    from mtnlp.errors import UserError

    path = tmp_path / "in.jsonl"
    path.write_text('{"words": ["fine"], "id": 1}\n' + line + "\n")
    with pytest.raises(UserError, match=rf"^{path}:2: .*{re.escape(said)}"):
        input_lines(str(path))


def test_standard_input_is_named_so_in_every_message(monkeypatch):
    import io

    from mtnlp.cli import input_lines

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'"one"\n\n{"text": "two"}\n')))
    assert [where for _, where, _ in input_lines("-")] == ["standard input:1", "standard input:3"]


def test_predict_cli_bad_jsonl_and_bad_model(model_dir, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": oops}\n')
    code, _, err = main_cli(monkeypatch, capsys, "predict", str(model_dir), "--input", str(bad))
    assert code == 2 and f"{bad}:2: invalid JSON" in err
    code, _, err = main_cli(monkeypatch, capsys, "predict", str(tmp_path / "no-model"), "x")
    assert code == 2 and "model folder not found" in err


def test_export_parity_through_transformers_pipeline(model_dir, tmp_path):
    """`mtnlp export` of a classification, a regression and a tagging head, each loaded by plain
    transformers in a fresh interpreter where mtnlp cannot be imported: the same logits, and
    `transformers.pipeline` runs on it."""
    from mtnlp.cli import main

    model = MultiTaskModel.from_pretrained(model_dir).eval()
    enc = AutoTokenizer.from_pretrained(model_dir)(TEXTS[:3], padding=True, return_tensors="pt")
    tasks = {"sentiment": "text-classification", "score": "text-classification", "ner": "token-classification"}
    for task in tasks:
        assert main(["export", str(model_dir), "--task", task, str(tmp_path / task)]) == 0
    code = f"""
import sys, json, torch
sys.modules["mtnlp"] = None
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer, pipeline
out = {{}}
for task, kind in {tasks!r}.items():
    folder = {str(tmp_path)!r} + "/" + task
    auto = AutoModelForTokenClassification if kind == "token-classification" else AutoModelForSequenceClassification
    model = auto.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**tok({TEXTS[:3]!r}, padding=True, return_tensors="pt")).logits
    pipe = pipeline(kind, model=folder)
    out[task] = {{"logits": logits.tolist(), "pipe": str(pipe({TEXTS[0]!r}))[:200], "id2label": model.config.id2label}}
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for task in tasks:
        with torch.no_grad():
            expected = model(**enc, task=task).logits
        logits = torch.tensor(results[task]["logits"])
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)  # regression: (n, 1) on both sides
        if task != "score":
            assert list(results[task]["id2label"].values()) == TASKS[task]["labels"]


def test_export_unknown_task_is_a_user_error(model_dir, tmp_path, monkeypatch, capsys):
    code, _, err = main_cli(monkeypatch, capsys, "export", str(model_dir), "--task", "nope", str(tmp_path / "x"))
    assert code == 2 and "no such task" in err


def test_each_sequence_head_reads_the_form_it_was_trained_on(make_recipe, tmp_path, capsys):
    """A pair goes to the heads trained on pairs, a single text to the others (tagging heads too, trained on
    single sentences): no pair-trained head scores a lone sentence, nor a single-text head a pair. A head
    named in `tasks` must read every input: it is never silently left out."""
    from mtnlp.cli import main
    from mtnlp.recipe import load_recipe
    from mtnlp.recipes.multitask import train

    tasks = {"nli": {"type": "classification", "data": {"train": str(DATA / "pairs_sample.tsv"),
                                                        "text_column": "premise", "text_pair_column": "hypothesis"}},
             "sentiment": {"type": "classification",
                           "data": {"train": str(DATA / "sst2_sample.jsonl"), "text_column": "sentence"}},
             "ner": {"type": "tagging", "data": {"train": str(DATA / "ner_sample.conll")}}}
    model = train(load_recipe(make_recipe(tasks=tasks, training={"steps": 2}))).model
    assert {t: spec.get("text_pair") for t, spec in model.config.tasks.items()} == \
        {"nli": True, "sentiment": False, "ner": False}
    folder = tmp_path / "run" / "model"
    pipe = MultiTaskPipeline.from_pretrained(str(folder), precision="fp32")
    pair = {"text": "A man rides a bike .", "text_pair": "A person is on a bike ."}
    text, both = pipe(["A gorgeous movie .", pair])
    assert set(text) == {"sentiment", "ner"} and set(both) == {"nli"}
    assert both["nli"] == pipe(pair, tasks=["nli"])["nli"] and text["sentiment"] == pipe("A gorgeous movie .")["sentiment"]
    with pytest.raises(ValueError, match=r"^inputs\[0\]: a text, but no requested task reads it \(nli reads text pairs\)$"):
        pipe("A gorgeous movie .", tasks=["nli"])
    with pytest.raises(ValueError, match=r"^inputs\[0\]: a text pair, but no requested task reads it "
                                         r"\(sentiment reads single texts\)$"):
        pipe(pair, tasks=["sentiment"])
    with pytest.raises(ValueError, match=r"^inputs\[0\]: a text pair, but a requested task does not read it "
                                         r"\(ner reads single texts or \{words\}, sentiment reads single texts\): ask only for"):
        pipe([pair, pair], tasks=["nli", "ner", "sentiment"])
    lenient = pipe(["A gorgeous movie .", pair], tasks=["nli", "sentiment"], strict=False)  # what serve asks
    assert [set(r) for r in lenient] == [{"sentiment"}, {"nli"}]
    capsys.readouterr()
    assert main(["predict", str(folder), "--tasks", "nli", "a lone sentence"]) == 2
    assert "TEXT argument 1: a text, but no requested task reads it (nli reads text pairs) (a pair: an --input " \
           'line {"text": ..., "text_pair": ...})' in capsys.readouterr().err
    assert main(["predict", str(folder), "--tasks", "ner,sentiment,nli", "a lone sentence"]) == 2
    assert "TEXT argument 1: a text, but a requested task does not read it (nli reads text pairs)" in \
        capsys.readouterr().err


def test_a_bad_input_is_named_as_serve_names_it(model_dir):
    """The pipeline's errors name the input and field at fault, in serve's words (tasks.base.text_input_problem)."""
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    for value, message in (({"text": "a", "id": 7}, "inputs[1].id: unknown field (expected: text, text_pair)"),
                           ({"text": "a", "text_pair": None}, "inputs[1].text_pair: expected a string"),
                           ({"text_pair": "a"}, "inputs[1].text: expected a string"),
                           (7, "inputs[1]: expected a text or an object {\"text\": ..., \"text_pair\": ...}, got int"),
                           ("ab\ud800", "inputs[1]: holds a lone surrogate (an invalid \\u escape such as \\ud800), "
                                        "which no tokenizer takes")):
        with pytest.raises(ValueError) as e:
            pipe(["fine", value])
        assert str(e.value) == message


def test_predict_names_the_first_bad_line_and_the_lines_it_truncated(model_dir, tmp_path, monkeypatch, capsys):
    lines = ['"a fine text"', '{"question": "Who?", "context": "Ann."}', '{"text": "x", "choices": ["only one"]}']
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    code, _, err = main_cli(monkeypatch, capsys, "predict", str(model_dir), "--input", str(tmp_path / "in.jsonl"))
    assert code == 2 and err.strip().splitlines()[-1].startswith(
        f"error: {tmp_path / 'in.jsonl'}:2: an input of the extractive_qa type, but no task reads it"), \
        err  # line 2, not line 3's type check first
    # a real process: the truncation warning reaches the user's stderr (in pytest, warnings are recorded instead)
    (tmp_path / "in.jsonl").write_text(json.dumps("short") + "\n" + json.dumps(" ".join(["word"] * 100)) + "\n")
    proc = run_cli("predict", str(model_dir), "--input", str(tmp_path / "in.jsonl"), "--tasks", "sentiment")
    assert proc.returncode == 0, proc.stderr
    assert f"1 input(s) longer than max_length=32 tokens were truncated ({tmp_path / 'in.jsonl'}:2): sequence heads " \
           "read only what fits" in proc.stderr


def test_a_tagging_head_built_in_python_reads_single_texts_and_a_folder_has_no_revision(tiny_encoder, model_dir,
                                                                                        monkeypatch, capsys):
    tasks = {"pos": {"type": "tagging", "labels": ["A", "B"]},
             "nli": {"type": "classification", "labels": ["no", "yes"], "text_pair": True}}
    model = MultiTaskModel.from_encoder(tiny_encoder, tasks)
    assert model.config.tasks["pos"]["text_pair"] is False  # as training records it
    pipe = MultiTaskPipeline(model, AutoTokenizer.from_pretrained(tiny_encoder), precision="fp32")
    assert set(pipe({"text": "a b", "text_pair": "c"})) == {"nli"} and set(pipe("a b")) == {"pos"}
    code, _, err = main_cli(monkeypatch, capsys, "predict", str(model_dir), "x", "--revision", "dev")  # was ignored
    assert code == 2 and err.strip().splitlines()[-1] == \
        f"error: revision 'dev': {model_dir} is a local folder; a revision is for a hub id"


def test_output_dash_is_standard_output_for_predict_and_refused_by_evaluate(model_dir, tmp_path, capsys, monkeypatch):
    """`--output -` wrote a file named '-', where `--input -` reads standard input."""
    from mtnlp.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(model_dir), "--tasks", "sentiment", "--output", "-", "a text"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"]["sentiment"]["label"] in ("negative", "positive")
    assert not (tmp_path / "-").exists()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("tasks: {}\n")
    assert main(["evaluate", str(model_dir), str(recipe), "--output", "-"]) == 2
    assert capsys.readouterr().err.startswith("error: --output -: evaluate prints its table on standard output")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_status_1_naming_what_was_written_for_predict_and_evaluate(model_dir, tmp_path, capsys,
                                                                                   monkeypatch):
    """predict said `error: No space left on device` (no name); evaluate --output called it the user's (status 2)."""
    from mtnlp.cli import main

    assert main(["predict", str(model_dir), "a text", "--output", "/dev/full"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: /dev/full: No space left on device"
    full = open("/dev/full", "w")
    monkeypatch.setattr(sys, "stdout", full)
    assert main(["predict", str(model_dir), "a text"]) == 1
    monkeypatch.undo()
    with pytest.raises(OSError):
        full.close()  # what it holds still cannot be written
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: standard output: No space left on device"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"tasks": {"sentiment": {"type": "classification", "data": {
        "train": str(DATA / "sst2_sample.jsonl"), "validation": str(DATA / "sst2_sample.jsonl"),
        "text_column": "sentence", "label_names": {0: "negative", 1: "positive"}}}}}))
    assert main(["evaluate", str(model_dir), str(recipe), "--tasks", "sentiment", "--output", "/dev/full"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: /dev/full: No space left on device"
    full = open("/dev/full", "w")
    monkeypatch.setattr(sys, "stdout", full)
    assert main(["evaluate", str(model_dir), str(recipe), "--tasks", "sentiment", "--output", str(tmp_path / "e.json")]) == 1
    monkeypatch.undo()
    with pytest.raises(OSError):
        full.close()
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: standard output: No space left on device"


def test_predict_writes_each_pipeline_calls_results_as_it_ends(model_dir, capsys, monkeypatch):
    """All inputs were predicted before the first line was written: `| head -1` waited for all of them (53 s for
    200,000 lines), and held every result in memory. The output and the truncation warning are as in one call."""
    from mtnlp import cli

    long = "word " * 60  # past the model's max_length of 32
    texts = [long, "short one", "another", "and one more", long]
    with pytest.warns(UserWarning) as one_call:
        assert cli.main(["predict", str(model_dir), "--batch-size", "2", "--precision", "fp32", *texts]) == 0
    whole = capsys.readouterr()
    calls = []
    from mtnlp.pipeline import MultiTaskPipeline

    real = MultiTaskPipeline.__call__
    monkeypatch.setattr(MultiTaskPipeline, "__call__", lambda self, inputs, **kw: calls.append(len(inputs)) or
                        real(self, inputs, **kw))
    monkeypatch.setattr(cli, "PREDICT_CHUNK", 1)  # calls of one batch, 2 inputs
    with pytest.warns(UserWarning) as caught:
        assert cli.main(["predict", str(model_dir), "--batch-size", "2", "--precision", "fp32", *texts]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert calls == [2, 2, 1] and len(lines) == 5
    for line, before in zip(lines, whole.out.splitlines()):  # (other batches pad otherwise: float rounding)
        got, expected = json.loads(line), json.loads(before)
        assert got["text"] == expected["text"]
        assert got["predictions"]["sentiment"]["label"] == expected["predictions"]["sentiment"]["label"]
        assert got["predictions"]["score"]["value"] == pytest.approx(expected["predictions"]["score"]["value"], abs=1e-5)
    said = [str(w.message) for w in caught if "truncated" in str(w.message)]
    assert said == [str(w.message) for w in one_call if "truncated" in str(w.message)]
    assert said[0].startswith("2 input(s) longer than max_length=32 tokens were truncated (TEXT argument 1, TEXT "
                              "argument 5): ")


def test_a_missing_model_folder_is_a_file_not_found_error_as_transformers_raises(tmp_path):
    from mtnlp.errors import NotFound

    with pytest.raises(FileNotFoundError, match="model folder not found") as caught:
        MultiTaskPipeline.from_pretrained(str(tmp_path / "missing"))
    assert isinstance(caught.value, NotFound)
    with pytest.raises(OSError):  # what transformers' MultiTaskModel.from_pretrained raises there
        MultiTaskModel.from_pretrained(str(tmp_path / "missing"))


def test_the_public_names_are_listed_and_truncation_warning_is_one_of_them(model_dir):
    import mtnlp
    from mtnlp import TruncationWarning
    from mtnlp.pipeline import TruncationWarning as where_raised

    assert TruncationWarning is where_raised and "TruncationWarning" in mtnlp.__all__
    assert {"MultiTaskConfig", "MultiTaskModel", "MultiTaskPipeline", "TruncationWarning", "__version__"} <= set(dir(mtnlp))
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32", max_length=8)
    with pytest.warns(TruncationWarning, match=r"inputs\[0\]"):
        pipe(TEXTS[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=mtnlp.TruncationWarning)  # as a user filters it
        pipe(TEXTS[0])


def test_a_torch_dataset_of_texts_is_read_as_a_list(model_dir):
    from transformers.pipelines.pt_utils import KeyDataset

    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    rows = [{"text": text} for text in TEXTS[:3]]
    assert pipe(KeyDataset(rows, "text")) == pipe(TEXTS[:3])

    class Texts(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return TEXTS[i]

    assert pipe(Texts()) == pipe(TEXTS[:2])


def test_a_lora_model_answers_each_thread_with_its_own_tasks_adapter(tiny_encoder, tmp_path):
    """The active adapter is module state: another thread's call for another task switched it in the middle of
    this call's pass, and two pipelines on one loaded LoRA model (their own tokenizers) answered 35 of 40 calls
    with the other task's adapter."""
    import threading

    lora = {"type": "lora", "r": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["query", "value"]}
    torch.manual_seed(0)
    model = MultiTaskModel.from_encoder(tiny_encoder, {k: TASKS[k] for k in ("sentiment", "pos")}, sharing=lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p))
    model.save_pretrained(tmp_path / "lora")
    loaded = MultiTaskModel.from_pretrained(str(tmp_path / "lora"))
    pipes = [MultiTaskPipeline(loaded, AutoTokenizer.from_pretrained(tiny_encoder), precision="fp32") for _ in "ab"]
    alone = pipes[0](TEXTS[0], tasks=["sentiment"])["sentiment"]["score"]
    other = threading.Thread(target=lambda: pipes[1](TEXTS[1], tasks=["pos"]))
    layer = next(m for m in loaded.encoder.modules() if hasattr(m, "_active_adapter"))

    def mid_pass(*_):  # this call is in its pass: the other thread's call for pos runs now, or waits its turn
        if not other.is_alive() and other.ident is None:
            other.start()
            other.join(timeout=1)

    hook = layer.register_forward_pre_hook(mid_pass)
    together = pipes[0](TEXTS[0], tasks=["sentiment"])["sentiment"]["score"]
    hook.remove()
    other.join()
    assert together == pytest.approx(alone, abs=1e-6)


def test_predict_says_its_precision_on_stderr_and_evaluate_records_it(model_dir, tmp_path, capsys, monkeypatch):
    """predict never said which precision it ran (bf16 flips a few tags against fp32), and eval-SPLIT.json did not
    record it, where metrics.json does."""
    from mtnlp.cli import main

    assert main(["predict", str(model_dir), "a text", "--tasks", "sentiment", "--precision", "FP32"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["predictions"]["sentiment"]  # standard output: the JSON lines only
    assert "precision: fp32 (requested)" in err.splitlines()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"tasks": {"sentiment": {"type": "classification", "data": {
        "validation": str(DATA / "sst2_sample.jsonl"), "text_column": "sentence",
        "label_names": {0: "negative", 1: "positive"}}}}}))
    assert main(["evaluate", str(model_dir), str(recipe), "--precision", "no", "--output", str(tmp_path / "e.json")]) == 0
    written = json.loads((tmp_path / "e.json").read_text())
    assert written["precision"] == {"requested": "fp32", "used": "fp32", "device": "cpu", "reason": "requested"}


# ---------------------------------------------------------------- pinned by mutation testing (mutants no test killed)


def test_pairs_and_single_texts_mixed_in_one_call_each_get_their_answer(tiny_encoder):
    """A head saved without text_pair reads both forms: one call given both, interleaved, batches them apart."""

    model = MultiTaskModel.from_encoder(tiny_encoder, {"s": {"type": "classification", "labels": ["a", "b", "c"]}})
    pipe = MultiTaskPipeline(model, AutoTokenizer.from_pretrained(tiny_encoder), device="cpu", precision="fp32",
                             batch_size=4)
    inputs = [{"text": "a b", "text_pair": "c"}, "short", {"text": "x", "text_pair": "y z w"}, "another text",
              "third one here"]
    together = pipe(inputs, return_all_scores=True)
    alone = [pipe(x, return_all_scores=True) for x in inputs]
    assert [set(r) for r in together] == [{"s"}] * len(inputs)
    for t, a in zip(together, alone):
        assert t["s"]["scores"] == pytest.approx(a["s"]["scores"], abs=1e-5)


def test_tasks_named_twice_in_tasks_are_asked_for_once():
    from mtnlp.cli import requested_tasks

    assert requested_tasks("b,a,b", ["a", "b"]) == ["b", "a"]
    assert requested_tasks(None, ["a", "b"]) is None


def test_cut_choice_and_question_inputs_are_named_by_their_index_in_the_call(tiny_encoder):
    """A cut multiple-choice or QA input was named by its place among its own head's inputs (inputs[0] here), not
    the call's: mixed with texts, the warning, serve's `truncated` and predict's line names pointed at another."""
    from mtnlp import TruncationWarning

    tasks = {"s": {"type": "classification", "labels": ["a", "b"]}, "mc": {"type": "multiple_choice"},
             "qa": {"type": "extractive_qa"}}
    pipe = MultiTaskPipeline(MultiTaskModel.from_encoder(tiny_encoder, tasks),
                             AutoTokenizer.from_pretrained(tiny_encoder), device="cpu", precision="fp32", max_length=16)
    long = " ".join(["word"] * 40)  # 40 tokens: more than max_length=16
    inputs = ["short text", {"text": long, "choices": ["yes", "no"]}, "another",
              {"question": long, "context": "Ann went."}, {"text": "a", "choices": ["b", "c"]}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = pipe(inputs)
    assert [set(r) for r in out] == [{"s"}, {"mc"}, {"s"}, {"qa"}, {"mc"}]
    cut = [w.message for w in caught if isinstance(w.message, TruncationWarning)]
    assert len(cut) == 1 and cut[0].indices == [1, 3] and "(inputs[1], inputs[3])" in str(cut[0])


# ---------------------------------------------------------------- pinned by mutation testing (mutation10 survivors)

def test_a_pipeline_given_no_max_length_caps_it_at_the_positions_without_a_warning(tiny_encoder):
    """Only a max_length the caller gave is worth a warning: the tokenizer's 512, capped at the encoder's 128
    positions, warned about a `max_length None` nobody gave (P07)."""
    model = MultiTaskModel.from_encoder(tiny_encoder, {"s": {"type": "classification", "labels": ["neg", "pos"]}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe = MultiTaskPipeline(model, AutoTokenizer.from_pretrained(tiny_encoder), device="cpu", precision="fp32")
    assert pipe.max_length == 128
    assert not [w for w in caught if "position embeddings" in str(w.message)], [str(w.message) for w in caught]


def test_a_pipeline_on_a_cpu_model_given_no_device_takes_the_machines_accelerator(model_dir, monkeypatch):
    """A model loaded on the CPU (as from_pretrained loads it) stayed there on a machine with a GPU: the pipeline
    must ask for the machine's accelerator when no device is given (P16)."""
    import mtnlp.pipeline as pipeline

    asked = []
    monkeypatch.setattr(pipeline, "default_device", lambda cpu=False: asked.append(cpu) or torch.device("cpu"))
    pipe = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    assert asked == [False] and pipe.device == torch.device("cpu")
    MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32", device="cpu")
    assert asked == [False]  # a device given is taken as it is
