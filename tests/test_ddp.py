"""Real 2-process DDP on CPU (gloo): both ranks train and end with identical parameters."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, tiny_tasks, write_recipe

WORKER = Path(__file__).with_name("ddp_worker.py")


def launch_jobs(launcher: str, jobs: list[dict], folder: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """ddp_worker.py's jobs trained one after another in ONE launch: the launch, and each job's stdout."""
    (folder / "jobs.json").write_text(json.dumps(jobs))
    cmd, env = launch_command(launcher, "--jobs", folder / "jobs.json")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    return proc, [part.split("\n", 1)[1] for part in proc.stdout.split("=== job ")[1:]]


def launch_command(launcher: str, *worker_args) -> tuple[list[str], dict]:
    bin_dir = Path(sys.executable).parent
    port = str(29500 + os.getpid() % 1000)
    if launcher == "torchrun":
        cmd = [str(bin_dir / "torchrun"), "--nproc_per_node", "2", "--master_port", port]
        env = {}
    else:  # the README's command; `accelerate launch --cpu --num_processes 2` would start ONE process
        cmd = [str(bin_dir / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port]
        env = {"ACCELERATE_USE_CPU": "1"}
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, **env, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    return [*cmd, str(WORKER), *map(str, worker_args)], env


CASES = [("torchrun", "no", "with_validation"), ("accelerate", "bf16", "train_only"), ("torchrun", "no", "streamed"),
         ("torchrun", "no", "one_task")]


def case_job(folder: Path, encoder: str, precision: str, data: str) -> dict:
    folder.mkdir()
    tasks = tiny_tasks()
    if data != "with_validation":
        tasks = {"sentiment": {"type": "classification",
                               "data": {"train": str(DATA / "sst2_sample.jsonl"), "text_column": "sentence"}},
                 "ner": {"type": "tagging", "data": {"train": str(DATA / "ner_sample.conll")}}}
    training = {"steps": 6, "grad_accum": 2, "cpu": True, "mixed_precision": precision, "save_every": 3}
    if data == "one_task":  # every parameter gets a gradient in every step: no search for unused ones
        tasks.pop("ner")
        training.pop("cpu")  # a machine without a GPU: DDP on CPUs without training.cpu (each trained alone before)
    if data == "streamed":  # every rank reads the stream and trains on its share of each round of batches
        from test_streaming import hub_folder, streamed_task

        tasks["sentiment"] = streamed_task(hub_folder(folder, train_rows=50), shuffle_buffer=16)
    # grad_accum=2 mixes tasks inside one update; find_unused_parameters covers the idle heads
    if data == "with_validation":  # rank 1's figures never improve, rank 0's always: rank 0's must decide for both
        training.update(eval_every=2, early_stopping_patience=1)  # (or rank 1 stops at step 4, and rank 0 waits)
    return {"recipe": str(write_recipe(folder, encoder, tasks=tasks, training=training)), "out": str(folder),
            "skew": data == "with_validation"}


def one_process_checkpoint_at_its_last_step(folder: Path, encoder: str) -> dict:
    """A job resuming, with two processes, a checkpoint one process wrote at the last step."""
    from mtnlp.folders import release_run_folder
    from mtnlp.recipe import load_recipe
    from mtnlp.train import checkpoint, setup, train_step

    folder.mkdir()
    recipe = write_recipe(folder, encoder, training={"steps": 3, "log_every": 10, "cpu": True, "mixed_precision": "no"})
    run = setup(load_recipe(recipe))
    for _ in range(3):
        train_step(run)
    saved = checkpoint(run)
    assert json.loads((saved / "rank-0.json").read_text())["loss_log"]["counts"]
    release_run_folder(run.lock)  # this process's run ends here (it held its folder: the launched one is refused)
    run.bar.close()
    return {"recipe": str(recipe), "out": str(folder), "overrides": [f"training.resume_from={saved}"]}


def pooled_tagging_job(folder: Path, encoder: str) -> dict:
    """A job whose updates take 2 micro-batches of NER sentences in each of 2 processes, dropout off: compared
    with 4 micro-batches in one process (test_tagging_tokens_are_pooled_across_processes)."""
    import shutil

    folder.mkdir()
    still = folder / "encoder"  # the tiny encoder without dropout: the two runs must draw no random numbers
    shutil.copytree(encoder, still)
    config = json.loads((still / "config.json").read_text())
    (still / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.0,
                                                   "attention_probs_dropout_prob": 0.0}))
    tasks = {"ner": {"type": "tagging", "dropout": 0.0, "data": {"train": str(DATA / "ner_sample.conll")}}}
    training = {"steps": 3, "batch_size": 2, "grad_accum": 2, "lr": 1e-2, "cpu": True, "save_every": 100}
    recipe = write_recipe(folder, str(still), tasks=tasks, training=training, sampling={"group_by_length": False})
    return {"recipe": str(recipe), "out": str(folder)}


DDP_METHODS = {
    "pcgrad+uncertainty": {"gradient": "pcgrad", "weighting": "uncertainty", "weighting_lr": 0.1},
    "lora+dwa": {"sharing": "lora", "weighting": "dwa", "dwa_window": 2},
    "task_layers-frozen": {"sharing": "task_layers", "task_layers": 1, "freeze_encoder": True},
}


def methods_jobs(root: Path, encoder: str) -> tuple[list[dict], dict[str, Path]]:
    """Each of DDP_METHODS trained under 2-process DDP, then lora+dwa resumed from its step-3 checkpoint: the jobs,
    and {name: its folder} in the jobs' order."""
    jobs, folders = [], {}
    for name, mtl in DDP_METHODS.items():
        folders[name] = root / name
        folders[name].mkdir()
        dwa = mtl.get("weighting") == "dwa"  # 6 steps: windows of 2 end at 2 and 4, the weights they give train 5, 6
        recipe = write_recipe(folders[name], encoder, mtl=mtl, training={
            "steps": 6 if dwa else 4, "grad_accum": 2, "cpu": True, "mixed_precision": "bf16", "save_every": 3})
        jobs.append({"recipe": str(recipe), "out": str(folders[name])})
        if dwa:  # resumed in the middle of a window: each rank must get back its own loss sums, not rank 0's
            again, resumed_folder = folders[name] / "again", root / "lora+dwa resumed"
            resumed_folder.mkdir()
            jobs[-1]["copy"] = [str(folders[name] / "run"), str(again)]  # once trained
            resumed = {"recipe": str(recipe), "out": str(resumed_folder),
                       "overrides": [f"output_dir={again}",
                                     f"training.resume_from={again / 'checkpoints' / 'step-000003'}"]}
    folders["lora+dwa resumed"] = resumed_folder
    return [*jobs, resumed], folders


@pytest.fixture(scope="module")
def launched(tmp_path_factory, tiny_encoder):
    """launched(launcher): this file's cases for that launcher, trained in ONE launch (each costs three processes'
    start-up, seconds): the launch, and {case: (its stdout, its folder)}. The one_task case comes first: it must
    be what a new process meets."""
    launches = {}

    def get(launcher):
        if launcher not in launches:
            root = tmp_path_factory.mktemp(f"launch-{launcher}")
            cases = sorted(((precision, data) for named, precision, data in CASES if named == launcher),
                           key=lambda case: case[1] != "one_task")
            folders = {data: root / data for _, data in cases}
            jobs = [case_job(folders[data], tiny_encoder, precision, data) for precision, data in cases]
            if launcher == "accelerate":  # (test_methods_under_two_process_ddp's)
                more, named = methods_jobs(root, tiny_encoder)
                jobs += more
                folders.update(named)
            if launcher == "torchrun":
                folders["resumed"] = root / "resumed"
                jobs.append(one_process_checkpoint_at_its_last_step(folders["resumed"], tiny_encoder))
                folders["pooled"] = root / "pooled"
                jobs.append(pooled_tagging_job(folders["pooled"], tiny_encoder))
            proc, stdouts = launch_jobs(launcher, jobs, root)
            launches[launcher] = proc, dict(zip(folders, zip(stdouts, folders.values())))
        return launches[launcher]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("launcher,precision,data", CASES)
def test_two_process_ddp_keeps_ranks_identical(launched, launcher, precision, data):
    proc, cases = launched(launcher)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "find_unused_parameters" not in proc.stderr  # DDP's warning when the search finds nothing
    stdout, tmp_path = cases[data]
    assert stdout.count("2 processes (DDP, MULTI_CPU)") == 1
    assert proc.stdout.count("2 processes (DDP, MULTI_CPU)") == len(cases)  # (rank 1 says it in no job's part)
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all("MULTI_CPU" in r["distributed_type"] for r in ranks)
    assert ranks[0]["digest"] == ranks[1]["digest"]
    # outputs are written once, and a checkpoint holds both ranks' RNG state
    assert (tmp_path / "run" / "model" / "config.json").exists()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["processes"] == 2  # the batch is 2 x batch_size
    checkpoint = tmp_path / "run" / "checkpoints" / "step-000006"
    assert (checkpoint / "rng-0.json").exists() and (checkpoint / "rng-1.json").exists()
    if data == "with_validation":  # rank 0's validation figures per label, as its metrics
        per_label = json.loads((tmp_path / "run" / "metrics.json").read_text())["per_label"]
        assert set(per_label) == {"sentiment", "ner"}
        assert all(f["support"] >= 0 for splits in per_label.values() for f in splits["validation"].values())
        assert sum(f["support"] for f in per_label["sentiment"]["validation"].values()) == 15
    if data == "streamed":
        trained = json.loads((tmp_path / "run" / "metrics.json").read_text())["trained_on"]["sentiment"]
        # both ranks' batches: an epoch of 50 rows is 3 rounds of 2 x 8 and a last round of 2, shared 1 + 1
        rounds = [16, 16, 16, 2]
        assert trained["batches"] > 4 and trained["examples"] == sum(rounds[i % 4] for i in range(trained["batches"]))


@pytest.mark.slow
def test_tagging_tokens_are_pooled_across_processes(launched):
    """2 processes x 2 micro-batches of the same 4 batches of sentences as 1 process x 4: the same model (each
    token weighs the same in an update, summed over the processes, not each process's own mean), and the same
    logged losses (every process's, weighted by its share of the tokens)."""
    from safetensors.torch import load_file

    import torch
    from mtnlp.recipe import load_recipe
    from mtnlp.recipes.multitask import train

    proc, cases = launched("torchrun")
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = cases["pooled"][1]
    train(load_recipe(folder / "recipe.yaml", ["training.grad_accum=4", f"output_dir={folder / 'alone'}"]))
    two, one = (load_file(folder / run / "model" / "model.safetensors") for run in ("run", "alone"))
    assert two.keys() == one.keys()
    for name in two:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-5, msg=name)  # (1.9e-2 off with each process its own tokens)
    logged = [[json.loads(line)["loss"]["ner"] for line in (folder / run / "train_log.jsonl").read_text().splitlines()]
              for run in ("run", "alone")]
    assert len(logged[0]) == 3 and logged[0] == pytest.approx(logged[1], rel=1e-5)  # (rank 0's alone: 9 % off)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DDP_METHODS))
def test_methods_under_two_process_ddp(launched, name):
    proc, cases = launched("accelerate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = cases[name][1]
    ranks = [json.loads((folder / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # each rank saw different data: identical parameters AND loss weights mean the gradients, the
    # learned log-variances and DWA's loss means were all averaged across ranks
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert ranks[0]["loss_weights"] == ranks[1]["loss_weights"]
    if DDP_METHODS[name].get("weighting") == "uncertainty":
        assert any(abs(w - 0.5) > 1e-3 for w in ranks[0]["loss_weights"].values())
    if DDP_METHODS[name].get("weighting") == "dwa":  # resumed from step 3, in the middle of a window
        again = json.loads((cases["lora+dwa resumed"][1] / "rank-0.json").read_text())
        assert again["loss_weights"] == ranks[0]["loss_weights"] and again["digest"] == ranks[0]["digest"]


def test_a_leftover_world_size_in_one_process_trains_alone(make_recipe, tmp_path):
    """WORLD_SIZE without a launcher (a shell that kept it): no process group, one process trains. Telling
    launched processes by the variable alone made this wait for a second rank, or fail without MASTER_ADDR."""
    recipe = make_recipe(training={"steps": 1})
    env = {**os.environ, "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    env.pop("MASTER_ADDR", None)
    proc = subprocess.run([sys.executable, "-m", "mtnlp", "train", str(recipe)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "processes (DDP" not in proc.stdout and (tmp_path / "run" / "model" / "config.json").exists()


@pytest.mark.parametrize("command", [["evaluate", "MODEL", "RECIPE"], ["predict", "MODEL", "a text"], ["serve", "MODEL"]])
def test_a_command_but_train_under_a_launcher_is_one_line_from_the_first_process(make_recipe, tmp_path, command):
    """Each process evaluated the whole split, printed the table and wrote the same --output file at once;
    predict printed every prediction once per process."""
    args = [{"MODEL": str(tmp_path / "model"), "RECIPE": str(make_recipe())}.get(a, a) for a in command]
    launched = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}
    for rank, said in (("0", f"error: mtnlp {command[0]} runs in one process"), ("1", "")):
        proc = subprocess.run([sys.executable, "-m", "mtnlp", *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **launched, "RANK": rank})
        assert proc.returncode == 2 and proc.stderr.startswith(said) and len(proc.stderr.splitlines()) == (rank == "0")


@pytest.mark.slow
@pytest.mark.parametrize("overrides,said,warned", [
    (["training.lrr=1"], "unknown key 'training.lrr'", []),
    (["hub_private=true", "training.steps=1"], None,  # (one launch for both warnings: each costs seconds)
     ["hub_private: not read", "tasks.tags.tune_thresholds: the tuned thresholds predict"]),  # said by every process
], ids=["error", "warnings"])
def test_a_recipe_mistake_under_a_launcher_is_said_once(make_recipe, tmp_path, overrides, said, warned):
    """Every process meets it; the first says it, and the launcher stops the others before they repeat it.
    A warning about the recipe (in a run that trains) is said once too, and one about what a run fitted."""
    tasks = None
    if warned:  # thresholds tuned on a model that learned nothing overpredict
        rows = [{"text": f"text {i}", "labels": [["a", "b", "c", "d"][i % 4]]} for i in range(40)]
        (tmp_path / "tags.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        tasks = {"tags": {"type": "multilabel", "tune_thresholds": True, "data": {
            "train": str(tmp_path / "tags.jsonl"), "validation_from_train": 0.5, "label_column": "labels"}}}
    recipe = make_recipe(training={"cpu": True}, **({"tasks": tasks} if tasks else {}))
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run([str(bin_dir / "torchrun"), "--nproc_per_node", "2", "--master_port",
                           str(29500 + os.getpid() % 1000), "-m", "mtnlp", "train", str(recipe), *overrides],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    if said:
        assert proc.returncode != 0 and len(errors) == 1 and said in errors[0], proc.stderr[-3000:]
    else:
        assert proc.returncode == 0 and not errors, proc.stderr[-3000:]
    for warning in warned:
        assert len([line for line in proc.stderr.splitlines() if warning in line]) == 1, proc.stderr[-3000:]


@pytest.mark.slow
def test_resuming_one_process_checkpoint_at_its_last_step_with_two_processes_ends(launched):
    """A 1-process checkpoint's unlogged losses go to both ranks; whether finish() writes their log record
    (a collective) must be the same on all ranks, or rank 0 waits for rank 1 forever."""
    proc, cases = launched("torchrun")
    _, tmp_path = cases["resumed"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3]


@pytest.mark.slow
@pytest.mark.parametrize("launcher,log_every,save_every", [("torchrun", 3, 1000), ("accelerate", 1000, 3)])
def test_sigterm_to_the_launcher_checkpoints_a_step_both_ranks_agree_on(make_recipe, tmp_path, launcher, log_every,
                                                                         save_every):
    """SLURM preemption: the launcher passes SIGTERM to both ranks, which stop together after the next log
    or checkpoint step with a checkpoint of it, instead of dying without one (or going on to the next log
    step, however far)."""
    import signal
    import time

    recipe = make_recipe(training={"steps": 400, "log_every": log_every, "save_every": save_every, "cpu": True,
                                   "mixed_precision": "no"})
    cmd, env = launch_command(launcher, recipe, tmp_path)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log = tmp_path / "run" / "train_log.jsonl"
    deadline = time.time() + 240
    saved = tmp_path / "run" / "checkpoints"
    while not (log.exists() and log.read_text().count("\n") >= 2 or saved.exists() and len(list(saved.iterdir())) >= 2):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0 and stderr.count("interrupted at step ") == 1, stderr[-3000:]
    step = int(stderr.split("interrupted at step ")[1].split(":")[0])
    assert step % 3 == 0 and step < 400
    checkpoint = tmp_path / "run" / "checkpoints" / f"step-{step:06d}"
    assert (checkpoint / "trainer_state.json").exists(), stderr[-3000:]
    assert (checkpoint / "rank-0.json").exists() and (checkpoint / "rank-1.json").exists()


def test_launched_processes_on_a_device_without_ddp_are_a_recipe_error(make_recipe, monkeypatch):
    """Accelerate runs no DDP on mps: each launched process would train alone into the same folder."""
    import types

    import torch

    from mtnlp import train as training
    from mtnlp.errors import UserError
    from mtnlp.recipe import load_recipe

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(training, "PartialState", lambda cpu, **kwargs: types.SimpleNamespace(num_processes=1,
                                                                                   device=torch.device("mps")))
    recipe = make_recipe()
    with pytest.raises(UserError, match=rf"^{recipe}(:\d+)?: training.cpu: launched as "
                                        r"2 processes, but Accelerate runs no DDP on mps devices: launch one process, "
                                        r"or set training.cpu: true$"):
        training.make_accelerator(load_recipe(recipe))


def test_launched_processes_wait_for_each_other_as_long_as_the_recipe_says(make_recipe, monkeypatch):
    """The first process tokenises the data while the others wait: NCCL's own 10 minutes were too short for a
    first run on a very large data set. The timeout goes to the process group's forming (PartialState)."""
    import datetime

    import mtnlp.train
    from mtnlp.recipe import load_recipe

    asked, real = [], mtnlp.train.PartialState
    monkeypatch.setattr(mtnlp.train, "PartialState", lambda cpu=False, **kwargs: asked.append(kwargs) or real(cpu=cpu, **kwargs))
    mtnlp.train.make_accelerator(load_recipe(make_recipe()))
    mtnlp.train.make_accelerator(load_recipe(make_recipe(training={"ddp_timeout": 7200}, overwrite_output_dir=True)))
    assert [a["timeout"] for a in asked] == [datetime.timedelta(minutes=30), datetime.timedelta(hours=2)]
