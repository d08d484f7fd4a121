"""Dataset-scale jobs: one job API, run in this process (the default) or on Ray.

A :class:`JobSpec` names a model, data, a task and its settings as plain values; every
worker rebuilds the model and opens the data from it. :func:`run_job` writes sharded
safetensors plus a JSON manifest into the output directory, shard by shard and atomically,
so a stopped job resumes where it stopped. :func:`load_outputs` reads the shards back.

    from seethrough.app.jobs import JobSpec, run_job, load_outputs
    spec = JobSpec(task="explain", model="shapes-cnn", data="shapes", n=2000, out="out/ig",
                   settings={"method": "integrated_gradients", "n_steps": 32})
    run_job(spec)                    # or run_job(spec, engine="ray")
    maps = load_outputs("out/ig")["attributions"]

See docs/jobs.md.
"""

from .engine import ENGINES, JobFailed, plan_job, run_job
from .spec import TASKS, JobSpec
from .store import Manifest, ShardRecord, iter_shards, load_outputs
from .tasks import decode_strings

__all__ = [
    "ENGINES",
    "JobFailed",
    "JobSpec",
    "Manifest",
    "ShardRecord",
    "TASKS",
    "decode_strings",
    "iter_shards",
    "load_outputs",
    "plan_job",
    "run_job",
]
