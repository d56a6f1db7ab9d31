"""
Linear probes: where the classes become linearly separable
==========================================================

A logistic regression on each layer's globally average-pooled output of ``lenet5_digits``
(LeNet-5 trained on scikit-learn's digits, shipped), fitted on the training digits and scored on
the 450 held-out ones, all layers fed by one forward pass per batch: accuracy by depth, beside
the model's own accuracy and chance. The README's probe picture, as
``vizcnn probe digits -m lenet5_digits --layers ...`` makes it.

Run: ``python gallery/plot_probe.py [OUT_DIR]`` (default ``gallery/out/``; seconds).
"""

from __future__ import annotations

import sys
from pathlib import Path

from vizcnn import ProbeConfig, load_model, probe_layers
from vizcnn.features.figures import probes_figure

out = Path(sys.argv[1] if len(sys.argv) > 1 else "gallery/out")
out.mkdir(parents=True, exist_ok=True)

# %%
# Six layers, in forward order: both convolutions, their pooling, the two hidden FC layers.
model = load_model("lenet5_digits")
layers = ("features.1", "features.2", "features.4", "features.5", "classifier.2", "classifier.4")
result = probe_layers(model, "digits", ProbeConfig(layers=layers))
print(result.markdown())
figure = probes_figure(result, "lenet5_digits on digits: linear probes by depth")
figure.save(out / "probe_lenet5_digits.png")
