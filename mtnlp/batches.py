"""Which examples make up each task's batches, epoch after epoch (the task of each step: sampling.py).

A batch is a pure function of (seed, epoch, position), so the whole state is a few counters: a resumed
run continues with exactly the same batches, and under DDP each rank takes its share of the same order.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

from .errors import UserError


class TaskBatches:
    """Endless iterator of index batches over one task's training set, epoch after epoch.

    Epoch e's batches depend only on (seed, e). With group_by_length, examples are sorted by length
    inside shuffled windows of 50 batches, so a batch holds similar lengths and little padding.
    With max_tokens, a batch is filled with examples until its padded size (rows × longest) would
    exceed max_tokens, instead of holding batch_size rows.
    Under DDP each rank takes every world_size-th batch of the same epoch order.

    A run resumed with another cut (batch size, token budget, grouping, seed) goes on with the examples
    its epoch in progress has not had, cut the new way (`before` says how that epoch began).
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = False,
                 rank: int = 0, world_size: int = 1, max_tokens: int | None = None):
        self.lengths = np.asarray(lengths)
        self.cut = {"examples": len(self.lengths), "batch_size": None if max_tokens else batch_size,  # (unused then)
                    "max_tokens": max_tokens, "group_by_length": group_by_length, "seed": seed}
        self.rank, self.world_size = rank, world_size
        self.epoch, self.position, self.before = 0, 0, None
        self._batches = self.epoch_batches(0)

    def epoch_batches(self, epoch: int, cut: dict | None = None, world_size: int | None = None,
                      taken: np.ndarray | None = None) -> list[np.ndarray]:
        """Epoch `epoch`'s batches under `cut` (default: this one's) for `world_size` processes, of the examples
        not `taken` (a mask) before."""
        cut, world_size = cut or self.cut, world_size or self.world_size
        batch_size, max_tokens = cut["batch_size"], cut["max_tokens"]
        if max_tokens:  # rows per batch, on average: sets the sorting window
            batch_size = max(1, int(max_tokens // max(self.lengths.mean(), 1)))
        rng = np.random.default_rng([cut["seed"], epoch])
        order = rng.permutation(len(self.lengths))
        if taken is not None:
            order = order[~taken[order]]
        if cut["group_by_length"]:
            window = 50 * batch_size
            order = np.concatenate([chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                                    for chunk in np.split(order, range(window, len(order), window))])
        if max_tokens:
            batches = token_batches(order, self.lengths, max_tokens)
        else:
            batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if cut["group_by_length"]:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        usable = len(batches) - len(batches) % world_size or len(batches)  # equal count on every rank
        return batches[:usable]

    def taken(self, before: dict | None) -> np.ndarray | None:
        """Which examples the epoch had before its present cut began (None: it began with this cut): the
        batches `before` says its earlier cut(s) had taken."""
        if before is None:
            return None
        earlier = self.taken(before.get("before"))
        mask = np.zeros(len(self.lengths), dtype=bool) if earlier is None else earlier.copy()
        batches = self.epoch_batches(self.epoch, before["cut"], before["processes"], earlier)
        for batch in batches[:before["position"] * before["processes"]]:
            mask[batch] = True
        return mask

    def __iter__(self):
        return self

    def __next__(self) -> list[int]:
        if self.position * self.world_size >= len(self._batches):  # every rank is done with the epoch
            self.epoch, self.position, self.before = self.epoch + 1, 0, None
            self._batches = self.epoch_batches(self.epoch)
        # an epoch of fewer batches than processes: some ranks take one a second time, in the same epoch, so
        # that every rank's (epoch, position) stays rank 0's, which is what a checkpoint keeps
        index = (self.position * self.world_size + self.rank) % len(self._batches)
        self.position += 1
        return self._batches[index].tolist()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "cut": self.cut,
                **({"before": self.before} if self.before else {})}

    def load_state_dict(self, state: dict, written_by: int | None = None) -> None:
        """`written_by`: the number of processes that wrote `state` (default: as many as now). A state of another
        training set size (the data changed) starts its epoch again; TaskData's owner says so."""
        cut = {**self.cut, **state.get("cut", {})}  # older checkpoints: the cut was this one
        if cut["max_tokens"]:  # batch_size makes no batch then (a cut written with it: before 12-06)
            cut["batch_size"] = None
        self.epoch, before = int(state["epoch"]), state.get("before")
        if cut["examples"] != len(self.lengths):
            self.position, self.before = 0, None
        elif cut == self.cut:
            self.position, self.before = rounds(state, written_by, self.world_size), before
        else:  # the epoch goes on with the examples it has not had, cut the new way
            self.position = 0
            self.before = {"cut": cut, "position": int(state["position"]), "processes": written_by or self.world_size,
                           **({"before": before} if before else {})}
        self._batches = self.epoch_batches(self.epoch, taken=self.taken(self.before))


class StreamBatches:
    """Endless iterator of batches from a streamed training split (data.streaming), epoch after epoch:
    `batch_size` examples each, made into model rows by `encode`, in the order `examples_of(seed, epoch)`
    gives (the stream, shuffled with (seed, epoch)).

    Under DDP every process reads the stream and takes every world_size-th batch; an incomplete last
    round is shared evenly (left out when it holds fewer examples than processes), so all processes
    take the same count. The state is (epoch, position) like TaskBatches'; a resumed run reads its
    epoch again from the start and skips what was trained on: exact, at the cost of reading that part
    again (`offset`: the examples taken before a resume with another batch size). `name` (the split) is for
    the error when an epoch holds fewer examples than processes. `size`: the examples an epoch was said to
    hold (data.size or the metadata); the first epoch read whole that holds a tenth more or fewer is said.
    """

    def __init__(self, examples_of, encode, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 name: str = "the stream", size: int | None = None):
        self.examples_of, self.encode, self.name, self.size = examples_of, encode, name, size
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch, self.position, self.offset = 0, 0, 0
        self._examples, self._read = None, None

    def __iter__(self):
        return self

    def __next__(self) -> list[dict]:
        for attempt in range(2):
            if self._examples is None:  # (re)open the epoch, past the rounds already taken
                skip = self.offset + self.position * self.world_size * self.batch_size
                self._examples = itertools.islice(self.examples_of(self.seed, self.epoch), skip, None)
                self._read = 0 if skip == 0 else None  # (an epoch resumed part-way is not counted)
            round_ = list(itertools.islice(self._examples, self.world_size * self.batch_size))
            if self._read is not None:
                self._read += len(round_)
            if len(round_) >= self.world_size:  # a batch for every process
                self.position += 1
                share, extra = divmod(len(round_), self.world_size)  # a full round: share = batch_size
                start = self.rank * share + min(self.rank, extra)
                return self.encode(round_[start:start + share + (self.rank < extra)])
            if attempt:
                raise UserError(f"{self.name}: {len(round_)} example(s) in an epoch; training needs at least one "
                                f"per process ({self.world_size})")
            if self._read is not None and self.size and abs(self._read - self.size) > self.size / 10:
                if self.rank == 0:
                    warnings.warn(f"{self.name}: an epoch held {self._read:,} example(s), not the {self.size:,} its "
                                  "size says (data.size, or the data set's metadata): task sampling weighs the task, "
                                  "and metrics.json counts its examples, by that size; set data.size to the real "
                                  "count", stacklevel=2)
                self.size = None  # said once
            self.epoch, self.position, self.offset, self._examples = self.epoch + 1, 0, 0, None

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "batch_size": self.batch_size, "offset": self.offset}

    def load_state_dict(self, state: dict, written_by: int | None = None) -> None:
        self.epoch, self._examples = int(state["epoch"]), None
        batch_size, offset = state.get("batch_size", self.batch_size), state.get("offset", 0)
        if batch_size == self.batch_size:
            self.position, self.offset = rounds(state, written_by, self.world_size), offset
        else:  # the examples taken stay taken; the rest of the epoch comes in batches of the new size
            self.position = 0
            self.offset = offset + int(state["position"]) * (written_by or self.world_size) * batch_size


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
