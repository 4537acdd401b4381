"""Generate the small multiple-choice set of recipes/multiple_choice_example.yaml (and its tests):
"A banana is a kind of" with four categories to choose from, one of them right. Hand-made word lists,
no outside data; deterministic (random.Random(0)). Run from the repo root:

    python recipes/data/make_choice_data.py            # writes recipes/data/multiple_choice/*.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

CATEGORIES = {
    "animal": "dog cat horse cow sheep lion tiger rabbit elephant mouse goat bear",
    "fruit": "apple banana orange pear grape cherry peach lemon mango plum melon strawberry",
    "vehicle": "car bus truck bicycle train motorcycle van taxi tractor scooter tram lorry",
    "musical instrument": "guitar piano violin drum flute trumpet cello harp saxophone clarinet banjo organ",
    "tool": "hammer saw drill wrench screwdriver shovel rake chisel pliers axe spanner trowel",
    "piece of furniture": "chair table sofa bed desk shelf wardrobe stool bench cupboard dresser couch",
    "piece of clothing": "shirt jacket coat sock hat scarf glove dress skirt sweater boot tie",
    "sport": "football tennis golf cricket rugby hockey baseball basketball volleyball badminton boxing cycling",
}
TEMPLATES = ["A {item} is a kind of", "The {item} we saw yesterday was a", "Everyone knows that a {item} is a",
             "She pointed at the {item} and called it a", "In the catalogue, the {item} is listed under"]
SPLITS = {"train": 240, "dev": 60, "test": 60}


def examples(n: int, rng: random.Random, choices: int = 4) -> list[dict]:
    """n examples {"text", "choices", "label"}: the item's category among choices - 1 other categories."""
    names = list(CATEGORIES)
    out = []
    for _ in range(n):
        category = rng.choice(names)
        item = rng.choice(CATEGORIES[category].split())
        options = [category] + rng.sample([c for c in names if c != category], choices - 1)
        rng.shuffle(options)
        out.append({"text": rng.choice(TEMPLATES).format(item=item), "choices": options,
                    "label": options.index(category)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "multiple_choice"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for split, n in SPLITS.items():
        rows = examples(n, rng)
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{out / split}.jsonl: {n} examples")


if __name__ == "__main__":
    main()
