"""Library messages in the CLI's words: the flag a user typed instead of the argument a script
would pass."""

from __future__ import annotations

# Library messages name arguments and config fields (a script author never typed a flag); on
# the command line the same advice names the flag.
FIELD_FLAGS = {
    "pass replace_bundled=True to overwrite it": "add --replace-bundled to overwrite it",
    "pass overwrite=True to redo it": "use --overwrite to redo it",
    "or write to another folder": "or another -o folder",
    "with trust_checkpoint=True": "with --trust-checkpoint",
    "weights='none'": "--weights none",
    "weights=PATH": "--weights PATH",
    "with arch=...": "with --arch",
    "device='cpu'": "--device cpu",
    "amp=True ignored": "--amp ignored",
    "(weights=..., or seed=... with weights='none'):": "(--weights, or --seed with --weights none):",
    "limit must be at least 1": "--limit must be at least 1",
    # RunOptions (vizcnn.core.run_options)
    "batch must be at least 1 (or None: the default)": "--batch must be at least 1",
    "workers must be 0 or more": "--workers must be 0 or more",
    "describe(module, mean=..., std=...) or load_model(..., mean=..., std=...)": "--mean/--std",
    "(describe(labels=...) or load_model(labels=FILE))": "(--labels FILE)",
    "name a layer (layer=...)": "name one with --layer",
    # vizcnn.models.preflight: the one forward pass before any work
    "cannot take input_size ": "cannot take --input-size ",
    "; input_size=": "; --input-size ",
    "give the input_size the model was trained at": "give the --input-size it was trained at",
    "one per output (labels=...)": "one per line (--labels FILE)",
    "choose an empty or new folder, or pass allow_nonempty=True": (
        "choose an empty or new -o folder, or add --force"
    ),
    "choose another cache": "choose another --cache",
    "unknown colour map cmap=": "unknown colour map --cmap ",
    "needs train_data (an ImageFolder": "needs --train-data (an ImageFolder",
    "give variants (the built-in variant set is for data='digits' with lenet5_digits)": (
        "give --variant NAME=LAYER[,LAYER...] or --units LAYER:CHANNELS (the built-in variant "
        "set is for `digits -m lenet5_digits`), or --blocks"
    ),
    # attribution: method options (`vizcnn.attribution.methods`) and `attribute_folder`'s
    "IntegratedGradients steps": "--ig-steps",
    "IntegratedGradients baseline": "--baseline",
    "Occlusion baseline": "--baseline",
    "SmoothGrad samples": "--smoothgrad-samples",
    "SmoothGrad stdev": "--smoothgrad-stdev",
    "Occlusion window and stride": "--occlusion-window and --occlusion-stride",
    "Occlusion window": "--occlusion-window",
    "give the method a layer": "name one with --layer",
    "deletion steps": "--deletion-steps",
    " targets for ": " --target values for ",
    "sanity stages": "--sanity-stages",
    # vizcnn mine (vizcnn.runs.mine, vizcnn.mining.checkpoint)
    "; choose another folder": "; choose another -o",  # ensure_writable(..., flag="folder")
    "pass overwrite=True to replace it": "add --overwrite to replace it",
    "pass overwrite=True to start over": "add --overwrite to start over",
    "pass resume=True to continue it, or overwrite=True to start over": (
        "add --resume to continue it, or --overwrite to start over"
    ),
    "overwrite=True instead of resume=True": "--overwrite instead of --resume",
    "call mine_folder again with resume=True to continue": (
        "run the same command with --resume to continue"
    ),
    "choose another output": "choose another -o",
    "give a file name with output": "give a file name with -o",
    # config fields (`Config.field`) and arguments named by the techniques' messages
    "DreamConfig.tile=": "--tile ",  # "set DreamConfig.tile=512" -> "set --tile 512"
    "DreamConfig.tile": "--tile",
    "RenderConfig.lr": "--lr",
    "name at least one in FeatureMapConfig.layers": "name at least one with -l (see `vizcnn layers`)",
    " (NeighborsConfig.layer)": " with -l",
    "channels= or all_channels=True": "--channels or --all",  # core.units.resolve_unit
    # vizcnn mine: MineConfig, mine_patches' options, the checkpoint's settings
    "MineConfig.k": "-k",
    "MineConfig.rank": "--rank",
    "MineConfig.checkpoint_every": "--checkpoint-every",
    "MineConfig.checkpoint_seconds": "--checkpoint-seconds",
    "unknown projections ": "unknown --projections ",
    "use projections='none'": "use --projections none",
    "thumbnail size must be at least 8 pixels": "--thumbnail must be at least 8 pixels",
    "pass fewer images (limit=)": "use --limit",
    "the model (LoadedModel.name)": "the model (-m)",
    "the model's weights (their digest)": (
        "the model's weights (--weights; --seed with --weights none)"
    ),
    "the layer (MineConfig.layer)": "the layer (-l)",
    "the channels (MineConfig.channels)": "the channels (--channels / --all)",
    "the list of images (data, limit, crops, the samples' seed, input size)": (
        "the list of images (DATA, --limit, --crops, the samples' --seed, input size)"
    ),
    # vizcnn ablate: TrainConfig, run_ablation, lesion_study
    "TrainConfig.retrain='head' or 'all'": "--retrain head or all",
    "TrainConfig.retrain='all'": "--retrain all",
    "TrainConfig.retrain": "--retrain",
    "TrainConfig.epochs": "--epochs",
    "TrainConfig.lr": "--lr",
    "TrainConfig.batch_size": "--batch",
    "TrainConfig.from_scratch": "--from-scratch",
    "no variants: give at least one Variant (parse_variant or parse_units)": (
        "no variants: give --variant NAME=LAYER[,LAYER...] or --units LAYER:CHANNELS"
    ),
    "needs training data: pass train_data=": "needs training data (--train-data)",
    "name them with lesion_study(blocks=...), or remove layers with variants": (
        "name layers with --variant instead"
    ),
    # vizcnn probe: ProbeConfig
    "ProbeConfig.test_fraction": "--test-fraction",
    "ProbeConfig.max_iter": "--max-iter",
    "ProbeConfig.crops": "--crops",
    "ProbeConfig.model_classes='index'": "--model-classes index",
    "ProbeConfig.model_classes='off'": "--model-classes off",
    "ProbeConfig.model_classes": "--model-classes",
    "ProbeConfig.layers": "-l/--layers",
    "ProbeConfig.C": "-C",
    # vizcnn accentuate: accentuate's arguments and accentuate_files'
    "give reg_layer": "give --reg-layer",
    "reg_weight must be": "--reg-weight must be",
    "steps must be an int of at least 1": "--steps must be at least 1",
    "crops must be an int of at least 1": "--crops must be at least 1",
    "reg_crops must be an int from 1 to crops": "--reg-crops must be from 1 to --crops",
    "lower lr, or check the unit": "lower --lr, or check the unit",
    "give a folder name (no .png)": "give -o a folder (no .png)",
    "accentuate one (LAYER:CHANNEL)": "accentuate one (-l LAYER:CHANNEL)",
    # vizcnn concepts: ConceptConfig and find_concepts
    "ConceptConfig.k": "-k",
    "ConceptConfig.max_positions": "--max-positions",
    "ConceptConfig.patches": "--patches",
    "ConceptConfig.thumbnail": "--thumbnail",
    "ConceptConfig.heatmap_images": "--heatmap-images",
    "ConceptConfig.importance_images": "--importance-images",
    "ConceptConfig.max_iter": "the NMF's max_iter",
    "ConceptConfig.limit must be at least 1": "--limit must be at least 1",
    "ConceptConfig.crops": "--crops",
    "k must be between 1 and the": "-k must be between 1 and the",
    # vizcnn report: ReportConfig and plan_report
    "ReportConfig.units_per_layer": "--units-per-layer",
    "ReportConfig.render.diversity": "--diversity",
    "ReportConfig.vote_images": "--vote-images",
    "ReportConfig.vote_classes": "--vote-classes",
    "ReportConfig.accentuations": "--accentuations",
    "ReportConfig.accent_steps": "--accent-steps",
    "ReportConfig.concepts": "--concepts",
    "ReportConfig.concept_positions": "--concept-positions",
    "ReportConfig.limit": "--limit",
    "ReportConfig.crops": "--crops",
    "ReportConfig.projections": "--projections",
    "ReportConfig.layers": "--layers",
    "ReportConfig.ablation": "--ablation",
    "give the results.json that ablate_folder writes": (
        "give the results.json written by `vizcnn ablate -o OUT`"
    ),
    "is not the results.json of ablate_folder": "is not a `vizcnn ablate` results.json",
    "give FOLDER/results.json": "give OUT/results.json",
}


def as_flags(message: str) -> str:
    """A library message with its argument names replaced by the CLI's flags."""
    # longest first: a phrase may contain a shorter one (`weights='none'` inside a hint)
    for field_text in sorted(FIELD_FLAGS, key=len, reverse=True):
        message = message.replace(field_text, FIELD_FLAGS[field_text])
    return message
