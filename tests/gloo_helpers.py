"""Ranks of a CPU (gloo) process group in tests: a free port, and joining the group the way
`torchrun` would set a rank up (its environment variables, then `init_from_env`)."""

from __future__ import annotations

import os
import socket

import torch

from vizcnn.core.distributed import init_from_env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def join_cpu_group(rank: int, world: int, port: int) -> None:
    """Join a `world`-rank gloo group on `port` as `rank` (one torch thread per rank: the ranks
    share the machine's cores); leave it with `vizcnn.core.distributed.shutdown()`."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    init_from_env(torch.device("cpu"))
