"""The default multi-task recipe: one shared encoder; each update trains on the batches the task sampler picks.

    mtnlp train recipes/demo.yaml [key=value ...]                       # runs this loop
    python recipes/multitask.py --config recipes/demo.yaml [key=value ...]   # the same

To change the loop, copy this file (`mtnlp recipes copy multitask my_recipe.py`), edit it and run
`python my_recipe.py --config ...`. The components are in mtnlp/train.py.
"""

from mtnlp.train import (Run, TrainResult, checkpoint, evaluate_and_select, finish, interrupted, is_eval_step,
                         is_save_step, log_step, setup, starts_a_transfer, stop_after_step_on_signal, stopped_early,
                         train_step)


def train(recipe, raw=None) -> TrainResult:
    run: Run = setup(recipe, raw)  # data, model, optimizer, task sampler; resumes training.resume_from
    t = recipe.training
    with stop_after_step_on_signal(run) as stop:  # Ctrl-C / SIGTERM: checkpoint, then exit
        if starts_a_transfer(run):  # model.init_from: the starting model is scored, and kept unless training beats it
            evaluate_and_select(run)
        while run.progress.step < t.steps and not stopped_early(run):  # early stopping: training.early_stopping_patience
            # one update: train.draw_update takes the batches of the tasks the sampler picked,
            # forward_backward each one's head loss (the task type's, mtnlp/tasks); weighting.py
            # weights it, gradients.py combines the tasks' gradients (sum, the default: backward adds them)
            task = train_step(run)
            log_step(run, task)
            if is_eval_step(run):  # every eval_every steps, and the last
                evaluate_and_select(run)  # keeps the best model in run_dir/model
            saved = checkpoint(run) if is_save_step(run) else None  # every save_every steps, and the last one
            if stop.requested:
                raise interrupted(run, stop.requested, saved or checkpoint(run))
    return finish(run)  # the kept model on validation and test: metrics.json, model card, hub push


if __name__ == "__main__":
    from mtnlp.cli import run_recipe

    raise SystemExit(run_recipe(train))
