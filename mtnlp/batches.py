"""Which examples make up each task's batches, epoch after epoch (the task of each step: sampling.py).

A batch is a pure function of (seed, epoch, position), so the whole state is a few counters: a resumed
run continues with exactly the same batches, and under DDP each rank takes its share of the same order.
"""

from __future__ import annotations

import itertools

import numpy as np

from .errors import UserError


class TaskBatches:
    """Endless iterator of index batches over one task's training set, epoch after epoch.

    Epoch e's batches depend only on (seed, e). With group_by_length, examples are sorted by length
    inside shuffled windows of 50 batches, so a batch holds similar lengths and little padding.
    With max_tokens, a batch is filled with examples until its padded size (rows × longest) would
    exceed max_tokens, instead of holding batch_size rows.
    Under DDP each rank takes every world_size-th batch of the same epoch order.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = False,
                 rank: int = 0, world_size: int = 1, max_tokens: int | None = None):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.group_by_length = batch_size, seed, group_by_length
        self.max_tokens = max_tokens
        if max_tokens:  # rows per batch, on average: sets the sorting window
            self.batch_size = max(1, int(max_tokens // max(self.lengths.mean(), 1)))
        self.rank, self.world_size = rank, world_size
        self.epoch, self.position = 0, 0
        self._batches = self.epoch_batches(0)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        if self.group_by_length:
            window = 50 * self.batch_size
            order = np.concatenate([chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                                    for chunk in np.split(order, range(window, len(order), window))])
        if self.max_tokens:
            batches = token_batches(order, self.lengths, self.max_tokens)
        else:
            batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.group_by_length:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        usable = len(batches) - len(batches) % self.world_size or len(batches)  # equal count on every rank
        return batches[:usable]

    def __iter__(self):
        return self

    def __next__(self) -> list[int]:
        index = self.position * self.world_size + self.rank
        if index >= len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = self.epoch_batches(self.epoch)
            index = self.rank % len(self._batches)
        self.position += 1
        return self._batches[index].tolist()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict, written_by: int | None = None) -> None:
        """`written_by`: the number of processes that wrote `state` (default: as many as now)."""
        self.epoch, self.position = int(state["epoch"]), rounds(state, written_by, self.world_size)
        self._batches = self.epoch_batches(self.epoch)


class StreamBatches:
    """Endless iterator of batches from a streamed training split (data.streaming), epoch after epoch:
    `batch_size` examples each, made into model rows by `encode`, in the order `examples_of(seed, epoch)`
    gives (the stream, shuffled with (seed, epoch)).

    Under DDP every process reads the stream and takes every world_size-th batch; an incomplete last
    round is shared evenly (left out when it holds fewer examples than processes), so all processes
    take the same count. The state is (epoch, position) like TaskBatches'; a resumed run reads its
    epoch again from the start and skips what was trained on: exact, at the cost of reading that part
    again. `name` (the split) is for the error when an epoch holds fewer examples than processes.
    """

    def __init__(self, examples_of, encode, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 name: str = "the stream"):
        self.examples_of, self.encode, self.name = examples_of, encode, name
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch, self.position = 0, 0
        self._examples = None

    def __iter__(self):
        return self

    def __next__(self) -> list[dict]:
        for attempt in range(2):
            if self._examples is None:  # (re)open the epoch, past the rounds already taken
                skip = self.position * self.world_size * self.batch_size
                self._examples = itertools.islice(self.examples_of(self.seed, self.epoch), skip, None)
            round_ = list(itertools.islice(self._examples, self.world_size * self.batch_size))
            if len(round_) >= self.world_size:  # a batch for every process
                self.position += 1
                share, extra = divmod(len(round_), self.world_size)  # a full round: share = batch_size
                start = self.rank * share + min(self.rank, extra)
                return self.encode(round_[start:start + share + (self.rank < extra)])
            if attempt:
                raise UserError(f"{self.name}: {len(round_)} example(s) in an epoch; training needs at least one "
                                f"per process ({self.world_size})")
            self.epoch, self.position, self._examples = self.epoch + 1, 0, None

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict, written_by: int | None = None) -> None:
        self.epoch, self.position, self._examples = int(state["epoch"]), rounds(state, written_by, self.world_size), None


def rounds(state: dict, written_by: int | None, world_size: int) -> int:
    """The rounds of an epoch taken, in rounds of `world_size` batches, from a state written by `written_by`
    processes: the batches taken stay taken (a part of a round is taken again rather than never)."""
    return int(state["position"]) * (written_by or world_size) // world_size


def token_batches(order: np.ndarray, lengths: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Cut `order` into consecutive batches of at most max_tokens padded tokens (a longer example
    makes a batch of its own)."""
    batches, start, longest = [], 0, 0
    for i, length in enumerate(lengths[order].tolist()):
        if i > start and max(longest, length) * (i - start + 1) > max_tokens:
            batches.append(order[start:i])
            start, longest = i, 0
        longest = max(longest, length)
    if start < len(order):
        batches.append(order[start:])
    return batches
