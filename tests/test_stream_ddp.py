"""A real 2-process torchrun-style job (gloo on CPU): coverage, equal batch counts, elastic resume.

The test starts two processes with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set, as torchrun does
(forked from the test process where the OS allows it, so torch is not imported twice more on a
busy machine; as ``python this_file.py`` subprocesses otherwise). Each rank streams its share
(rank and world size come from torch.distributed), runs one collective per batch (an unequal
batch count would hang it), and all-gathers its keys.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
EPOCH_STEPS_BEFORE_SAVE = 2


def _job(split: str, out: str) -> None:
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from datakit.stream import loader

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    result: dict = {}
    dl = loader(split, 3, seed=7, epoch=2, num_workers=1)  # rank / world size from torch.distributed
    keys, batches = [], 0
    for batch in dl:
        dist.all_reduce(torch.ones(1))  # one collective per step: unequal batch counts would hang here
        keys += list(batch["__key__"])
        batches += 1
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, {"keys": keys, "batches": batches, "len": len(dl)})
    result["epoch"] = gathered

    part = loader(split, 3, seed=7, epoch=2, num_workers=1)  # a second pass, interrupted for a checkpoint
    it = iter(part)
    seen = [k for _ in range(EPOCH_STEPS_BEFORE_SAVE) for k in next(it)["__key__"]]
    dist.all_reduce(torch.ones(1))
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, seen)
    result["seen"] = gathered
    result["state"] = part.state_dict()
    del it
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def _forked_rank(split: str, out: str, env: dict[str, str]) -> None:
    os.environ.update(env)
    try:
        _job(split, out)
    except BaseException:
        import traceback

        Path(f"{out}.rank{env['RANK']}.err").write_text(traceback.format_exc())
        raise


def _launch(split: Path, out: Path, envs: list[dict[str, str]]) -> list[str]:
    """Run every rank; return the error logs of failed ranks (empty when all succeed)."""
    import multiprocessing as mp

    if "fork" in mp.get_all_start_methods():
        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=_forked_rank, args=(str(split), str(out), env)) for env in envs]
        for p in procs:
            p.start()
        for p in procs:
            p.join(150)
        if any(p.is_alive() for p in procs):
            for p in procs:
                p.kill()
            pytest.fail("the distributed job hung")
        return [Path(f"{out}.rank{e['RANK']}.err").read_text() if Path(f"{out}.rank{e['RANK']}.err").exists()
                else f"rank {e['RANK']} exit {p.exitcode}" for p, e in zip(procs, envs) if p.exitcode != 0]
    subs = [subprocess.Popen([sys.executable, __file__, str(split), str(out)], env=dict(os.environ, **env),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for env in envs]
    logs = []
    for p in subs:
        try:
            logs.append(p.communicate(timeout=150)[0])
        except subprocess.TimeoutExpired:
            for q in subs:
                q.kill()
            pytest.fail("the distributed job hung")
    return [log for p, log in zip(subs, logs) if p.returncode != 0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(180)
def test_two_process_gloo_job(tmp_path):
    from test_stream_support import write_split

    from datakit.shards.index import load_index
    from datakit.stream.dataset import ShardStream

    split = write_split(tmp_path, [9, 2, 11, 4, 1])  # 27 samples, 5 shards < 2 ranks x 1 worker x ... steps
    out = tmp_path / "result.json"
    port = str(_free_port())
    envs = [dict(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                 PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]), OMP_NUM_THREADS="1") for r in range(2)]
    errors = _launch(split, out, envs)
    assert not errors, "\n".join(errors)

    result = json.loads(out.read_text())
    ranks = result["epoch"]
    all_keys = sorted(f"s{u:05d}" for u in range(27))
    assert ranks[0]["batches"] == ranks[1]["batches"] == ranks[0]["len"] == 5  # ceil(27 / 6) steps on each rank
    assert sorted(ranks[0]["keys"] + ranks[1]["keys"]) == all_keys  # exactly once across the job
    assert not set(ranks[0]["keys"]) & set(ranks[1]["keys"])

    # elastic resume: the checkpoint taken by the 2-rank job continues on 1 rank with 3 workers
    state = result["state"]
    assert state["consumed"] == EPOCH_STEPS_BEFORE_SAVE * 3 * 2 and state["epoch"] == 2
    index = load_index(split)
    rest = ShardStream(index, 3, rank=0, world_size=1)
    rest.load_state_dict(state)
    remaining = [k for w in range(3) for b in rest.iter_worker(w, 3) for k in b["__key__"]]
    seen = [k for r in result["seen"] for k in r]
    assert sorted(seen + remaining) == all_keys


if __name__ == "__main__":
    _job(sys.argv[1], sys.argv[2])
