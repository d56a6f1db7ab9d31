"""Results of an ablation as data, a Markdown table and bar charts (matplotlib Agg, no display)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from vizcnn.ablation.experiment import AblationResult
from vizcnn.ablation.lesion import LesionResult
from vizcnn.ablation.variants import CONTROL, ORIGINAL


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def results_dict(result: AblationResult) -> dict[str, Any]:
    """JSON-ready rows: accuracies, changes against control and original, parameters, adapters."""
    has_control = any(r.name == CONTROL for r in result.rows)
    rows = []
    for row in result.rows:
        rows.append(
            {
                "name": row.name,
                "description": row.description,
                "removed": row.removed,
                "changes": [vars(c) for c in row.changes],
                "params": row.params,
                "params_removed": row.params_removed,
                "params_new": row.params_new,
                "adapter": row.adapter,
                "trained": row.trained,
                "final_loss": row.final_loss,
                "scores": row.scores.to_dict(),
                "train_scores": row.train_scores.to_dict() if row.train_scores else None,
                "top1_change_vs_original": result.change(row.name, ORIGINAL),
                "top5_change_vs_original": result.change(row.name, ORIGINAL, "top5_accuracy"),
                "top1_change_vs_control": result.change(row.name, CONTROL) if has_control else None,
                "top5_change_vs_control": (
                    result.change(row.name, CONTROL, "top5_accuracy") if has_control else None
                ),
            }
        )
    return {"retrain": {**vars(result.config), "seed": result.seed}, "rows": rows}


def results_markdown(result: AblationResult, title: str = "Ablation results") -> str:
    """The results table in Markdown (accuracies in %, changes in percentage points)."""
    has_control = any(r.name == CONTROL for r in result.rows)
    base = CONTROL if has_control else ORIGINAL
    lines = [
        f"# {title}",
        "",
        _budget(result, base),
        "",
        f"| variant | train top-1 % | top-1 % | top-5 % | top-1 vs {base} | top-5 vs {base} "
        + ("" if base == ORIGINAL else "| top-1 vs original ")
        + "| agrees with original % | params removed | adapter | removed |",
        "|---|---:|---:|---:|---:|---:|"
        + ("" if base == ORIGINAL else "---:|")
        + "---:|---:|---|---|",
    ]
    for row in result.rows:
        s = row.scores
        lines.append(
            f"| {row.name} | {_pct(row.train_scores.top1_accuracy if row.train_scores else None)} "
            f"| {_pct(s.top1_accuracy)} | {_pct(s.top5_accuracy)} "
            f"| {_pct(result.change(row.name, base), True)} "
            f"| {_pct(result.change(row.name, base, 'top5_accuracy'), True)} "
            + ("" if base == ORIGINAL else f"| {_pct(result.change(row.name, ORIGINAL), True)} ")
            + f"| {_pct(s.agreement)} "
            f"| {row.params_removed:,} | {'yes' if row.adapter else 'no'} "
            f"| {', '.join(row.removed) or '-'} |"
        )
    lines.append("")
    for row in result.rows:
        for change in row.changes:
            if change.kind in ("adapter", "refit"):
                lines.append(f"- {row.name}: {change.layer} {change.kind}: {change.detail}")
    return "\n".join(lines) + "\n"


def _figure_png(fig: Any) -> Image.Image:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    buffer.seek(0)
    image = Image.open(buffer)
    image.load()
    return image.convert("RGB")


def _budget(result: AblationResult, base: str) -> str:
    config = result.config
    if config.retrain == "none":
        text = "No retraining."
    else:
        text = (
            f"Retraining: {config.retrain}, {config.epochs} epochs, lr {config.lr}, "
            f"batch {config.batch_size}, seed {result.seed}"
            + (", from scratch" if config.from_scratch else "")
            + "."
        )
    against = f"`{base}` and `{ORIGINAL}`" if base != ORIGINAL else f"`{ORIGINAL}`"
    return f"{text} Changes in percentage points against {against}."


def results_chart(result: AblationResult) -> Image.Image:
    """Bar chart: top-1 change (points) per variant against parameters removed."""
    from matplotlib.figure import Figure

    has_control = any(r.name == CONTROL for r in result.rows)
    base = CONTROL if has_control else ORIGINAL
    rows = [r for r in result.rows if r.name not in (ORIGINAL, CONTROL)]
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    changes = [100 * (result.change(r.name, base) or 0.0) for r in rows]
    labels = [f"{r.name}\n-{r.params_removed / 1000:.1f}k params" for r in rows]
    colors = ["#c44e52" if r.adapter else "#4c72b0" for r in rows]
    ax.bar(range(len(rows)), changes, color=colors)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel(f"top-1 change vs {base} (points)")
    ax.set_title("Accuracy change against parameters removed (red: adapter or re-fit)", fontsize=9)
    fig.tight_layout()
    return _figure_png(fig)


def lesion_dict(result: LesionResult) -> dict[str, Any]:
    return {
        "intact": result.intact.to_dict(),
        "blocks": [
            {
                "block": les.block,
                "depth": les.depth,
                "params": les.params,
                "removable": les.removable,
                "reason": les.reason,
                "scores": les.scores.to_dict() if les.scores is not None else None,
            }
            for les in result.lesions
        ],
    }


def lesion_markdown(result: LesionResult, title: str = "Lesion study") -> str:
    """One row per block: agreement with the intact network, or why it cannot be removed."""
    labelled = result.intact.labelled > 0
    head = "| block | params | top-1 agreement % | agreement where intact p>=0.5 % | top-5 overlap % | mean KL (nats) |"
    head += " top-1 % |" if labelled else ""
    lines = [
        f"# {title}",
        "",
        f"{result.intact.images} images ({result.intact.confident} with intact top-1 "
        "probability >= 0.5); each block removed alone (identity), no retraining."
        + (f" Intact top-1: {_pct(result.intact.top1_accuracy)} %." if labelled else ""),
        "",
        head,
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if labelled else ""),
    ]
    for les in result.lesions:
        if les.scores is None:
            lines.append(
                f"| {les.block} | {les.params:,} | not removable: {les.reason} | | | |"
                + (" |" if labelled else "")
            )
            continue
        s = les.scores
        lines.append(
            f"| {les.block} | {les.params:,} | {_pct(s.agreement)} | {_pct(s.confident_agreement)} "
            f"| {_pct(s.top5_overlap)} "
            f"| {s.mean_kl:.3f} |" + (f" {_pct(s.top1_accuracy)} |" if labelled else "")
        )
    return "\n".join(lines) + "\n"


def lesion_chart(result: LesionResult) -> Image.Image:
    """Top-1 disagreement with the intact network against depth; non-removable blocks marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    shown = False
    for les in result.lesions:
        s = les.scores
        if s is not None and s.agreement is not None:
            ax.bar(les.depth - 0.2, 100 * (1 - s.agreement), width=0.4, color="#4c72b0",
                   label=None if shown else "all images")  # fmt: skip
            if s.confident_agreement is not None:
                ax.bar(les.depth + 0.2, 100 * (1 - s.confident_agreement), width=0.4,
                       color="#dd8452", label=None if shown else "intact p >= 0.5")  # fmt: skip
            shown = True
        else:
            ax.axvspan(les.depth - 0.4, les.depth + 0.4, color="#dddddd")
            ax.text(les.depth, 1, "shape\nchange", ha="center", fontsize=6, color="#555555")
    if shown:
        ax.legend(fontsize=7)
    ax.set_xticks(
        [les.depth for les in result.lesions],
        [les.block.rsplit(".", 1)[-1] for les in result.lesions],
        fontsize=7,
    )
    ax.set_xlabel("block removed (depth order; grey: downsampling/channel change, not removable)")
    ax.set_ylabel("top-1 changed (% of images)")
    ax.set_title("Lesion study: predictions changed by removing one block", fontsize=9)
    fig.tight_layout()
    return _figure_png(fig)
