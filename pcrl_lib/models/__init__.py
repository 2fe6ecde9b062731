"""Networks: encoders, the nsUNet with its feature pyramid, and the PCRLv2 heads."""

from pcrl_lib.models.encoders import ResNet18Encoder, UNetEncoder3D, build_encoder
from pcrl_lib.models.heads import ComparisonHead, Predictor, RestorationHead
from pcrl_lib.models.nsunet import NSUNet

__all__ = [
    "ComparisonHead",
    "NSUNet",
    "Predictor",
    "ResNet18Encoder",
    "RestorationHead",
    "UNetEncoder3D",
    "build_encoder",
]
