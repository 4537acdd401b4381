#!/usr/bin/env python
"""Generate the small extractive-QA example set in recipes/data/qa/ (for recipes/qa_example.yaml).

Invented towns, each described by a few template sentences (its river, founding year, founder and
market) among filler sentences; questions ask for one fact. Some towns lack a founder sentence, and
some of their questions ask for it anyway: unanswerable (SQuAD 2.0). No third-party text is used.

Writes train.json as SQuAD v2.0 JSON (articles of paragraphs of questions) and dev.jsonl as flat
rows in the form of the hub's `squad` data set, so the recipe reads both formats.

Deterministic (random.Random(0)). Usage, from the repo root:
    python recipes/data/make_qa_data.py [--out FOLDER]
"""
import argparse
import json
import random
from pathlib import Path


TOWNS = ("Alderby Brackwater Caldmoor Dunhallow Elmsworth Fenwick Glenmarrow Harlow Ivybridge Kestrel Larkhill "
         "Marrowdale Northcombe Oakhurst Pennick Quarrington Redwater Saltmere Thornbury Umberleigh Valemouth "
         "Westerhope Yarrowby Ashcombe Birchmoor Coldharbour").split()
RIVERS = "Avon Brede Colne Dart Esk Frome Glen Hull Isis Kennet Lune Mersey Nene Ouse Parrett Rother Stour Tamar".split()
FOUNDERS = ["Edith Marsh", "Tobias Crane", "Agnes Holt", "Rufus Penrose", "Mabel Sutter", "Osric Fenn",
            "Hilda Rowe", "Jasper Vane", "Constance Wilde", "Gideon Ashby", "Winifred Lowe", "Barnaby Hale"]
GOODS = "wool cheese pottery cider salt timber honey linen copper apples leather barley".split()
FILLER = ["The roads there are narrow.", "Its church has a tall spire.", "Fog is common in the mornings.",
          "A fair is held each summer.", "The old mill still stands.", "Many visitors come by train.",
          "The hills nearby are good for walking.", "Its school is the oldest in the region."]


def town_questions(rng: random.Random, town: str) -> tuple[str, list[dict]]:
    river, year, founder, goods = rng.choice(RIVERS), str(rng.randint(1100, 1899)), rng.choice(FOUNDERS), rng.choice(GOODS)
    facts = {"river": f"{town} lies on the river {river}.", "year": f"The town was founded in {year}.",
             "founder": f"Its founder was {founder}.", "goods": f"The market of {town} sells {goods}."}
    present = [f for f in facts if f in ("river", "year") or rng.random() < 0.7]
    sentences = [facts[f] for f in present] + rng.sample(FILLER, rng.randint(0, 4))
    rng.shuffle(sentences)
    context = " ".join(sentences)
    asks = {"river": [(f"Which river does {town} lie on?", river)],
            "year": [(f"When was {town} founded?", year), (f"In which year was {town} founded?", year)],
            "founder": [(f"Who founded {town}?", founder)],
            "goods": [(f"What does the market of {town} sell?", goods)]}
    questions = []
    for fact in rng.sample(list(asks), 2):
        question, answer = rng.choice(asks[fact])
        if fact in present:
            start = context.index(facts[fact]) + facts[fact].index(answer)
            questions.append({"question": question, "answers": [{"text": answer, "answer_start": start}],
                              "is_impossible": False})
        else:
            questions.append({"question": question, "answers": [], "is_impossible": True})
    return context, questions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "qa"))
    out = Path(parser.parse_args().out)
    rng = random.Random(0)
    out.mkdir(parents=True, exist_ok=True)
    towns = TOWNS[:]
    rng.shuffle(towns)
    articles, dev = [], []
    for split, names, copies in (("train", towns[:20], 6), ("dev", towns[20:], 5)):
        for town in names:
            paragraphs = []
            for copy in range(copies):  # the same town told differently, with other facts
                context, questions = town_questions(rng, town)
                for k, qa in enumerate(questions):
                    qa["id"] = f"{split}-{town.lower()}-{copy}-{k}"
                paragraphs.append({"context": context, "qas": questions})
            if split == "train":
                articles.append({"title": town, "paragraphs": paragraphs})
            else:
                dev += [{"id": qa["id"], "title": town, "context": p["context"], "question": qa["question"],
                         "answers": {"text": [a["text"] for a in qa["answers"]],
                                     "answer_start": [a["answer_start"] for a in qa["answers"]]}}
                        for p in paragraphs for qa in p["qas"]]
    (out / "train.json").write_text(json.dumps({"version": "v2.0", "data": articles}) + "\n")
    (out / "dev.jsonl").write_text("".join(json.dumps(row) + "\n" for row in dev))


if __name__ == "__main__":
    main()
