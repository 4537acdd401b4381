"""Training batches through a torch DataLoader, in the order the task sampler and batch iterators give.

The main process plans: for each micro-batch, the task (TaskSampler, or every task in turn for PCGrad, CAGrad and MGDA)
and that task's example indices (TaskBatches). Workers only look rows up and pad them (collate), so
the order never depends on the number of workers. The DataLoader runs ahead of training, so each
batch carries the sampler positions as of itself; a checkpoint saves the positions of the last batch
trained on, and a resumed run continues exactly there.
"""

from __future__ import annotations

import signal

import torch
from torch.utils.data import DataLoader, Dataset

from .data import collate
from .batches import StreamBatches, TaskBatches
from .sampling import TaskSampler


class BatchPlan:
    """Endless (task, example indices, positions after this batch) in training order. The positions
    also count each task's batches and examples so far (this process's share)."""

    def __init__(self, tasks: TaskSampler, batches: dict[str, TaskBatches | StreamBatches]):
        self.tasks, self.batches = tasks, batches
        self.seen = {name: {"batches": 0, "examples": 0} for name in batches}

    def __iter__(self):
        while True:
            task = next(self.tasks)
            batch = next(self.batches[task])  # example indices, or rows for a streamed task
            self.seen[task]["batches"] += 1
            self.seen[task]["examples"] += len(batch)
            yield task, batch, self.state_dict()

    def state_dict(self) -> dict:
        return {"sampler": self.tasks.state_dict(), "batches": {n: b.state_dict() for n, b in self.batches.items()},
                "seen": {n: dict(counts) for n, counts in self.seen.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.tasks.load_state_dict(state["sampler"])
        for name, b in self.batches.items():  # "ranks": how many processes wrote it (checkpoint.load_checkpoint)
            b.load_state_dict(state["batches"][name], state.get("ranks"))
        for name, counts in state.get("seen", {}).items():  # older checkpoints have no counts
            self.seen[name] = dict(counts)


class PlannedBatches(Dataset):
    """Map-style dataset whose keys are BatchPlan items: returns (task, padded tensors, positions)."""

    def __init__(self, rows: dict, pad_id: int, types: dict[str, str]):
        self.rows, self.pad_id, self.types = rows, pad_id, types

    def __getitem__(self, key):
        task, batch, positions = key  # batch: indices into the task's rows, or (streamed) the rows
        rows = [self.rows[task][i] for i in batch] if task in self.rows else batch
        return task, collate(rows, self.pad_id, self.types[task]), positions


def _ignore_interrupts(worker_id: int) -> None:
    # Ctrl-C, and a scheduler's SIGTERM (SLURM preemption), reach the whole process group; the main
    # process finishes its step and checkpoints, which needs the workers alive
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def training_loader(plan: BatchPlan, rows: dict, pad_id: int, types: dict[str, str], device: torch.device,
                    workers: int | None = None) -> DataLoader:
    """The DataLoader over `plan`: `workers` processes (default 2 on CUDA, 0 on CPU, where a worker
    would compete with the training step for the cores), pinned memory on CUDA."""
    cuda = device.type == "cuda"
    workers = (2 if cuda else 0) if workers is None else workers
    return DataLoader(PlannedBatches(rows, pad_id, types), sampler=plan, batch_size=None, num_workers=workers,
                      pin_memory=cuda, worker_init_fn=_ignore_interrupts if workers else None,
                      prefetch_factor=4 if workers else None,
                      # its own generator: iter() draws a worker seed, which must not move the global RNG
                      # (dropout) that a checkpoint restores
                      generator=torch.Generator())


