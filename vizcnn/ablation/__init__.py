"""Layer-removal ablations (Zeiler & Fergus Table 3) and block lesions (Veit et al. 2016)."""

from vizcnn.ablation.data import ImageFolderData, TensorData, UnlabelledData, digits, open_labelled
from vizcnn.ablation.evaluate import Scores, evaluate
from vizcnn.ablation.experiment import AblationResult, VariantResult, plan, run_ablation
from vizcnn.ablation.lesion import Lesion, LesionResult, lesion_study
from vizcnn.ablation.surgery import Ablated, Change, ablate
from vizcnn.ablation.training import TrainConfig, train
from vizcnn.ablation.variants import (
    DIGITS_VARIANTS,
    Variant,
    find_blocks,
    parse_units,
    parse_variant,
)
from vizcnn.ablation.votes import ClassVotes, class_votes

__all__ = [
    "Ablated",
    "AblationResult",
    "Change",
    "ClassVotes",
    "DIGITS_VARIANTS",
    "ImageFolderData",
    "Lesion",
    "LesionResult",
    "Scores",
    "TensorData",
    "TrainConfig",
    "UnlabelledData",
    "Variant",
    "VariantResult",
    "ablate",
    "class_votes",
    "digits",
    "evaluate",
    "find_blocks",
    "lesion_study",
    "open_labelled",
    "parse_units",
    "parse_variant",
    "plan",
    "run_ablation",
    "train",
]
