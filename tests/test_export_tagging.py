"""An exported tagging head under transformers' token-classification pipeline.

mtnlp trains only each word's first sub-token, so `aggregation_strategy="simple"` on an exported
tagger reads untrained tags on the other word pieces ("##cast"). With `aggregation_strategy="first"`
the pipeline takes each word's tag from its first sub-token, as `mtnlp predict` does: whole words
and the same entity spans. The README and the model card give that call.
"""

import torch
from transformers import AutoTokenizer, BertConfig, pipeline

from mtnlp import MultiTaskConfig, MultiTaskModel, MultiTaskPipeline
from mtnlp.cli import main
from mtnlp.pipeline import split_words
from mtnlp.tasks.tagging import align_labels
from mtnlp.hub import model_card, write_card

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TASKS = {"ner": {"type": "tagging", "labels": LABELS, "dropout": 0.1}}
# multi-word entities, and names the MiniLM word-piece vocabulary splits into several pieces
TRAIN = [
    ("Wojciech Kowalczyk flew to Szczebrzeszyn .", "B-PER I-PER O O B-LOC O"),
    ("Dagny Haraldsdottir met Ann Lee in Gdansk .", "B-PER I-PER O B-PER I-PER O B-LOC O"),
    ("Mr Brodsky visited Ouagadougou and Reykjavik .", "O B-PER O B-LOC O B-LOC O"),
    ("The weather in New Szczebrzeszyn was cold .", "O O O B-LOC I-LOC O O O"),
    ("Nobody came .", "O O O"),
]
TEXTS = [
    "Wojciech Kowalczyk flew to Szczebrzeszyn.",
    "Dagny Haraldsdottir met Ann Lee in Gdansk.",
    "Mr Brodsky visited Ouagadougou and Reykjavik.",
    "The weather in New Szczebrzeszyn was cold.",
    "Ann Lee and Wojciech Kowalczyk visited Gdańsk, Poland.",
    "Nobody came.",
]


def trained_tagger(tiny_encoder) -> tuple[MultiTaskModel, AutoTokenizer]:
    """The tiny encoder with a tagging head fitted to TRAIN as mtnlp trains (first sub-token labels only)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    torch.manual_seed(0)
    model = MultiTaskModel.from_encoder(tiny_encoder, TASKS)
    words = [text.split() for text, _ in TRAIN]
    enc = tokenizer(words, is_split_into_words=True, padding=True, return_tensors="pt")
    labels = torch.tensor([align_labels(enc.word_ids(i), [LABELS.index(t) for t in tags.split()])
                           for i, (_, tags) in enumerate(TRAIN)])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(80):
        loss = model(**enc, task="ner", labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


def test_exported_tagger_with_first_aggregation_gives_mtnlp_spans(tiny_encoder, tmp_path, capsys):
    model, tokenizer = trained_tagger(tiny_encoder)
    model_dir, export_dir = tmp_path / "model", tmp_path / "ner-model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    assert main(["export", str(model_dir), "--task", "ner", str(export_dir)]) == 0
    printed = capsys.readouterr().out
    assert f'pipeline("token-classification", model="{export_dir}", aggregation_strategy="first")' in printed
    assert "lone space token" not in printed  # WordPiece: its words are the pipeline's

    mt = MultiTaskPipeline.from_pretrained(str(model_dir), precision="fp32")
    ours = [out["ner"] for out in mt(TEXTS)]
    tagger = pipeline("token-classification", model=str(export_dir), aggregation_strategy="first", device="cpu")
    theirs = tagger(TEXTS)

    multi_piece_inside = 0
    for text, spans, entities in zip(TEXTS, ours, theirs):
        words = split_words(text)
        starts, ends = {s for _, (s, _) in words}, {e for _, (_, e) in words}
        for entity in entities:  # (a) whole words only
            assert "##" not in entity["word"], (text, entity)
            assert entity["start"] in starts and entity["end"] in ends, (text, entity)
        # (b) the same entities as `mtnlp predict` (B-PER/I-PER -> entity_group PER)
        assert [(e["entity_group"], e["start"], e["end"]) for e in entities] == \
               [(s["type"], s["start"], s["end"]) for s in spans], text
        pieces = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        for token, (start, end) in zip(pieces.tokens(), pieces["offset_mapping"]):
            if token.startswith("##") and any(s["start"] <= start and end <= s["end"] for s in spans):
                multi_piece_inside += 1
    assert sum(map(len, ours)) >= 5, ours  # not vacuous: entities were predicted ...
    assert multi_piece_inside >= 3, ours  # ... and several lie over words of more than one piece
    assert any(" " in s["text"] for spans in ours for s in spans), ours  # and at least one spans several words


def test_model_card_says_to_use_first_aggregation_for_tagging_heads(tiny_encoder, tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "model"
    MultiTaskModel.from_encoder(tiny_encoder, TASKS).save_pretrained(folder)
    write_card(folder)
    card = (folder / "README.md").read_text()
    assert 'pipeline("token-classification", model="ner-model", aggregation_strategy="first")' in card
    assert "mtnlp export REPO_OR_DIR --task ner ner-model" in card

    encoder = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64).to_dict()
    no_tagging = MultiTaskConfig(encoder=encoder, tasks={"sentiment": {"type": "classification",
                                                                       "labels": ["neg", "pos"], "dropout": 0.1}})
    assert "aggregation_strategy" not in model_card(no_tagging)
    assert "grouping reads only B- and I- tags" not in card  # an IOB2 head: its entities are mtnlp's


def test_an_iobes_heads_export_and_card_say_that_transformers_groups_other_entities(tiny_encoder, tmp_path, capsys):
    """transformers' grouping knows only B-/I-: B-PER E-PER comes back as two entities, S-PER S-PER as one."""
    torch.manual_seed(0)
    folder = tmp_path / "model"
    tasks = {"ner": {"type": "tagging", "labels": ["B-PER", "E-PER", "I-PER", "O", "S-PER"], "dropout": 0.1}}
    MultiTaskModel.from_encoder(tiny_encoder, tasks).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(folder)
    write_card(folder)
    assert ("The ner head: its tags are IOBES or BILOU, and transformers' grouping reads only B- and I- tags: its "
            "entities differ from mtnlp predict's (B-PER E-PER as two, S-PER S-PER as one).") in \
        (folder / "README.md").read_text()
    assert main(["export", str(folder), "--task", "ner", str(tmp_path / "ner-model")]) == 0
    assert "  (its tags are IOBES or BILOU, and transformers' grouping reads only B- and I- tags" in \
        capsys.readouterr().out


def test_the_exported_tokenizer_truncates_where_training_did(tiny_encoder, tmp_path):
    from transformers import AutoTokenizer

    model, tokenizer = trained_tagger(tiny_encoder)
    model.config.mtnlp = {"max_length": 12}  # what training records
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    assert main(["export", str(tmp_path / "model"), "--task", "ner", str(tmp_path / "out")]) == 0
    exported = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert exported.model_max_length == 12 and tokenizer.model_max_length != 12  # the caller's is untouched
    assert len(exported(" ".join(["word"] * 40), truncation=True)["input_ids"]) == 12
