"""The ablation page's numbers: a `vizcnn ablate` results.json (variants or lesions) as a table.

Reads the file another command wrote, with its provenance (`stored_provenance`), and draws the
chart with `vizcnn.report.html.charts`.
"""

from __future__ import annotations

import json
from typing import Any

from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.io.resume import stored_provenance
from vizcnn.report.builder.compute import Made
from vizcnn.report.builder.plan import Artifact
from vizcnn.report.html.charts import bar_chart_png


def make_ablation(artifact: Artifact, progress: ProgressCallback = no_progress) -> Made:
    """The table and chart of a `vizcnn ablate` results.json (either layout)."""
    path = artifact.params["file"]
    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    block = stored_provenance(path)
    if "rows" in data:
        table = _ablation_rows(data)
    else:
        table = _lesion_rows(data)
    chart = bar_chart_png(
        table["labels"],
        table["values"],
        ylabel=table["ylabel"],
        title=table["title"],
        highlight=table["highlight"],
    )
    progress(1, 1, "ablation")
    table["source_provenance"] = block
    return Made({"chart.png": chart}, table, {"file": path})


def _pct(value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * float(value):+.1f}" if signed else f"{100 * float(value):.1f}"


def _ablation_rows(data: dict[str, Any]) -> dict[str, Any]:
    columns = [
        "variant",
        "top-1 %",
        "top-5 %",
        "top-1 vs original",
        "params removed",
        "adapter",
        "removed",
    ]
    rows, labels, values, highlight = [], [], [], []
    for row in data.get("rows", []):
        scores = row.get("scores") or {}
        change = row.get("top1_change_vs_control")
        if change is None:
            change = row.get("top1_change_vs_original")
        rows.append(
            [
                str(row.get("name", "")),
                _pct(scores.get("top1_accuracy")),
                _pct(scores.get("top5_accuracy")),
                _pct(row.get("top1_change_vs_original"), signed=True),
                f"{int(row.get('params_removed') or 0):,}",
                "yes" if row.get("adapter") else "no",
                ", ".join(str(r) for r in row.get("removed") or []) or "-",
            ]
        )
        if row.get("name") not in ("original", "control"):
            labels.append(str(row.get("name", "")))
            values.append(100 * float(change or 0.0))
            highlight.append(bool(row.get("adapter")))
    retrain = data.get("retrain") or {}
    notes = [
        f"Retraining: {retrain.get('retrain', 'none')}"
        + (f", {retrain.get('epochs')} epochs" if retrain.get("retrain", "none") != "none" else "")
        + ". Red bars: variants with an adapter or re-fit."
    ]
    return {
        "title": "Layer-removal ablation",
        "columns": columns,
        "rows": rows,
        "labels": labels,
        "values": values,
        "highlight": highlight,
        "ylabel": "top-1 change (points)",
        "notes": notes,
    }


def _lesion_rows(data: dict[str, Any]) -> dict[str, Any]:
    columns = ["block", "params", "top-1 agreement %", "top-5 overlap %", "mean KL (nats)", "note"]
    rows, labels, values, highlight = [], [], [], []
    for block in data.get("blocks", []):
        scores = block.get("scores") or {}
        removable = scores and block.get("removable", True)
        rows.append(
            [
                str(block.get("block", "")),
                f"{int(block.get('params') or 0):,}",
                _pct(scores.get("agreement")) if removable else "-",
                _pct(scores.get("top5_overlap")) if removable else "-",
                f"{float(scores['mean_kl']):.3f}"
                if removable and scores.get("mean_kl") is not None
                else "-",
                "" if removable else f"not removable: {block.get('reason', '')}",
            ]
        )
        labels.append(str(block.get("block", "")))
        agreement = scores.get("agreement") if removable else None
        values.append(100 * (1 - float(agreement)) if agreement is not None else 0.0)
        highlight.append(not removable)
    intact = data.get("intact") or {}
    notes = [f"{intact.get('images', '?')} images; each block removed alone, no retraining."]
    return {
        "title": "Lesion study",
        "columns": columns,
        "rows": rows,
        "labels": labels,
        "values": values,
        "highlight": highlight,
        "ylabel": "top-1 changed (% of images)",
        "notes": notes,
    }
