"""The default multi-task recipe: one shared encoder, one task's batch per step.

    mtnlp train recipes/demo.yaml [key=value ...]                       # runs this loop
    python recipes/multitask.py --config recipes/demo.yaml [key=value ...]   # the same

To change the loop, copy this file (`mtnlp recipes copy multitask my_recipe.py`), edit it and run
`python my_recipe.py --config ...`. The components are in mtnlp/train.py.
"""

from mtnlp.train import (Run, TrainResult, checkpoint, evaluate_and_select, finish, interrupted, is_save_step, log_step,
                         setup, stop_after_step_on_signal, train_step)


def train(recipe, raw=None) -> TrainResult:
    run: Run = setup(recipe, raw)  # data, model, optimizer, task sampler; resumes training.resume_from
    t = recipe.training
    with stop_after_step_on_signal(run) as stop:  # Ctrl-C / SIGTERM: checkpoint, then exit
        while run.progress.step < t.steps:
            # one update: train.forward_backward takes the task the sampler picked and its head's
            # loss (the task type's, mtnlp/tasks); weighting.py weights it, gradients.py combines
            task = train_step(run)
            log_step(run, task)
            step = run.progress.step
            # evaluate_and_select keeps the best model in run_dir/model; True: stop early (after the checkpoint)
            early = ((t.eval_every and step % t.eval_every == 0) or step == t.steps) and evaluate_and_select(run)
            saved = checkpoint(run) if is_save_step(run) else None
            if stop.requested:
                raise interrupted(run, stop.requested, saved or checkpoint(run))
            if early:
                break
    return finish(run)  # the kept model on validation and test: metrics.json, model card, hub push


if __name__ == "__main__":
    from mtnlp.cli import run_recipe

    raise SystemExit(run_recipe(train))
