"""Start the DeepSpeed ranks with torchrun and wait for them.

`distill train --deepspeed cfg --nproc N [--nnodes M --node-rank R --master-addr A --master-port P]` runs
``python -m torch.distributed.run ... -m distill.trainer.launch <resolved config JSON>`` on this node; each
rank then trains with `distill.trainer.rank.train_here`. torchrun rather
than the `deepspeed` launcher: it needs no hostfile, ssh or mpi4py, and is the same on CPU and GPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

from distill.trainer.config import TrainConfig
from distill.trainer.distributed import extensions_dir
from distill.trainer.optim import deepspeed_config
from distill.trainer.rank import train_here

from distill.errors import UserError, exit_status

_DEFAULT_MULTI_NODE_PORT = 29500


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_command(config: TrainConfig, config_json: Path) -> list[str]:
    port = config.master_port or (_DEFAULT_MULTI_NODE_PORT if config.nnodes > 1 else _free_port())
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(config.nproc),
        "--nnodes",
        str(config.nnodes),
        "--node_rank",
        str(config.node_rank),
        "--master_addr",
        config.master_addr,
        "--master_port",
        str(port),
        "-m",
        "distill.trainer.launch",
        str(config_json),
    ]


def _environment(config: TrainConfig) -> dict[str, str]:
    env = dict(os.environ)
    env["TORCH_EXTENSIONS_DIR"] = extensions_dir()
    # torchrun pins every rank to one thread unless told otherwise; on a CPU that wastes the other cores.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // config.nproc)))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def launch(config: TrainConfig) -> Path:
    """Run the ranks to completion; return the adapter directory (written by global rank 0)."""
    deepspeed_config(config, micro_batches=1, world=config.nproc * config.nnodes)  # bad JSON fails here, once
    output_dir = config.output_path
    output_dir.mkdir(parents=True, exist_ok=True)
    config_json = output_dir / "train_config.json"
    # Atomic: on a shared disk, every node's launcher writes this same file while other nodes' ranks read it.
    staging = output_dir / f".train_config.json.{socket.gethostname()}.{os.getpid()}"
    staging.write_text(json.dumps(config.model_dump(mode="json"), indent=1), encoding="utf-8")
    os.replace(staging, config_json)
    result = subprocess.run(launch_command(config, config_json), env=_environment(config), check=False)
    if result.returncode != 0:
        raise UserError(
            f"training ranks failed (torchrun exit code {result.returncode}); their messages are above",
            exit_code=result.returncode if result.returncode in (2, 130) else 1,
        )
    return output_dir / "adapter"


def _rank_main(config_json: str) -> int:
    # DeepSpeed still calls collectives torch 2.13 deprecates: one FutureWarning per call, per rank.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed")

    config = TrainConfig.model_validate(json.loads(Path(config_json).read_text(encoding="utf-8")))

    def train() -> int:
        train_here(config)
        return 0

    # Every rank fails alike; rank 0 alone says why.
    return exit_status(train, quiet=os.environ.get("RANK", "0") != "0")


if __name__ == "__main__":
    sys.exit(_rank_main(sys.argv[1]))
