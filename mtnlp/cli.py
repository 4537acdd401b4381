"""Command line: `mtnlp train RECIPE [key=value ...]` and `mtnlp evaluate MODEL_DIR RECIPE`.

A user's mistake (UserError) prints one line, `error: ...`, and exits with status 2;
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mtnlp", description="Multi-task fine-tuning of one shared encoder.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train the tasks of a recipe")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. training.lr=3e-5")

    p = commands.add_parser("evaluate", help="evaluate a trained model on a recipe's tasks")
    p.add_argument("model", help="model directory (a run's model/ folder) or hub id")
    p.add_argument("recipe", help="recipe YAML file naming the tasks' data")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--split", default="validation", choices=["train", "validation", "test"])
    p.add_argument("--output", help="JSON file for the metrics (default: MODEL/eval-SPLIT.json)")

    args = parser.parse_args(argv)
    from .errors import UserError

    try:
        quiet_libraries()
        if args.command == "train":
            return cmd_train(args)
        return cmd_evaluate(args)
    except UserError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def cmd_train(args) -> int:
    from .recipe import load_recipe
    from .train import train

    recipe = load_recipe(args.recipe, args.overrides)
    result = train(recipe)
    if result.accelerator.is_main_process:
        print(f"run directory: {result.run_dir}")
    return 0


def cmd_evaluate(args) -> int:
    import torch
    from transformers import AutoTokenizer

    from .data import load_task
    from .errors import UserError
    from .evaluation import evaluate_split
    from .modeling import MultiTaskModel
    from .recipe import default_metrics, load_recipe
    from .report import table

    recipe = load_recipe(args.recipe, args.overrides)
    try:
        model = MultiTaskModel.from_pretrained(args.model)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    except (OSError, ValueError) as e:
        raise UserError(f"{args.model}: not an mtnlp model directory ({str(e).splitlines()[0]})") from None
    tasks, metrics = {}, {}
    for name, spec in recipe.tasks.items():
        if name not in model.config.tasks:
            raise UserError(f"{recipe.source}: tasks.{name}: the model has no such task "
                            f"(it has: {', '.join(model.config.tasks)})")
        head = model.config.tasks[name]
        if head["type"] != spec.type:
            raise UserError(f"{recipe.source}: tasks.{name}.type: {spec.type}, but the model's head is {head['type']}")
        tasks[name] = load_task(recipe, name, spec, tokenizer, recipe.model.max_length, splits=(args.split,),
                                labels=head["labels"])
        if args.split not in tasks[name].splits:
            raise UserError(f"{recipe.source}: tasks.{name}.data: no {args.split} split")
        metrics[name] = default_metrics(spec, head["labels"])
    if recipe.training.mixed_precision == "bf16":
        autocast = lambda: torch.autocast(model.device.type, dtype=torch.bfloat16)  # noqa: E731
    else:
        autocast = contextlib.nullcontext
    results = evaluate_split(model, tokenizer, tasks, metrics, args.split, recipe.training.eval_batch_size, autocast)
    print(table({name: {args.split: values} for name, values in results.items()}))
    output = Path(args.output) if args.output else Path(args.model) / f"eval-{args.split}.json"
    if not Path(args.model).is_dir() and not args.output:
        output = Path(f"eval-{args.split}.json")
    output.write_text(json.dumps({"tasks": {n: {args.split: v} for n, v in results.items()}}, indent=2))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
