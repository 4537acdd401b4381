#!/usr/bin/env python
"""Regenerate the small demo subsets in recipes/data/ from the full datasets.

UD EWT sentence counts are kept small (600 train / 200 dev) so that the whole
demo set stays under 1.5 MB; EWT sentences average ~1.1 kB of CoNLL-U each.

Deterministic: one random.Random(0) is used, always in the same order
(SST-2, TREC, UD EWT train, UD EWT dev). Sampled rows/sentences are written
in their original file order.

Usage (from the repo root):
    python recipes/data/make_demo_data.py [--src ../shared/data]

Only openly usable datasets are subset here (SST-2, TREC, UD English EWT).
CoNLL-2003 and AG News may not be redistributed and are never read.
"""
import argparse
import random
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent          # recipes/data
REPO = HERE.parent.parent                       # repo root


def sample_sorted(rng, items, k):
    """k random items of `items`, kept in original order."""
    idx = sorted(rng.sample(range(len(items)), k))
    return [items[i] for i in idx]


def make_sst2(src, out, rng, n_train=4000):
    out.mkdir(parents=True, exist_ok=True)
    lines = (src / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    assert header == "sentence\tlabel\n", header
    with open(out / "train.tsv", "w", encoding="utf-8", newline="") as f:
        f.write(header)
        f.writelines(sample_sorted(rng, rows, n_train))
    shutil.copyfile(src / "dev.tsv", out / "dev.tsv")


def read_trec(path):
    rows = []
    with open(path, encoding="latin-1", newline="") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            label, text = line.split(" ", 1)
            text = text.replace("\t", " ")  # none in the release; guard anyway
            rows.append((text, label.split(":", 1)[0]))
    return rows


def write_trec(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("text\tlabel\n")
        for text, label in rows:
            f.write(f"{text}\t{label}\n")


def make_trec(src, out, rng, n_train=3000):
    out.mkdir(parents=True, exist_ok=True)
    write_trec(out / "train.tsv", sample_sorted(rng, read_trec(src / "train_5500.label"), n_train))
    write_trec(out / "test.tsv", read_trec(src / "TREC_10.label"))


def read_conllu_blocks(path):
    """Sentence blocks (comment + token lines, each ending in '\n'), blank separators dropped."""
    blocks, cur = [], []
    with open(path, encoding="utf-8", newline="") as f:
        for line in f:
            if line.strip():
                cur.append(line)
            elif cur:
                blocks.append(cur)
                cur = []
    if cur:
        blocks.append(cur)
    return blocks


def write_conllu(path, blocks):
    with open(path, "w", encoding="utf-8", newline="") as f:
        for b in blocks:
            f.writelines(b)
            f.write("\n")


def make_ud(src, out, rng, n_train=600, n_dev=200):
    out.mkdir(parents=True, exist_ok=True)
    write_conllu(out / "train.conllu",
                 sample_sorted(rng, read_conllu_blocks(src / "en_ewt-ud-train.conllu"), n_train))
    write_conllu(out / "dev.conllu",
                 sample_sorted(rng, read_conllu_blocks(src / "en_ewt-ud-dev.conllu"), n_dev))
    shutil.copyfile(src / "LICENSE.txt", out / "LICENSE.txt")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=REPO.parent / "shared" / "data",
                    help="directory holding sst2/, trec/, ud_english_ewt/ (default: ../shared/data)")
    ap.add_argument("--out", type=Path, default=HERE, help="output directory (default: recipes/data)")
    ap.add_argument("--ud-train", type=int, default=600,
                    help="UD EWT train sentences (default 600; 2000 would be ~2.3 MB)")
    ap.add_argument("--ud-dev", type=int, default=200, help="UD EWT dev sentences (default 200)")
    args = ap.parse_args()
    rng = random.Random(0)
    make_sst2(args.src / "sst2", args.out / "sst2", rng)
    make_trec(args.src / "trec", args.out / "trec", rng)
    make_ud(args.src / "ud_english_ewt", args.out / "ud_ewt", rng, args.ud_train, args.ud_dev)
    for p in sorted(args.out.rglob("*")):
        if p.is_file() and p.suffix in {".tsv", ".conllu", ".txt"}:
            print(f"{p.relative_to(args.out)}\t{p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
