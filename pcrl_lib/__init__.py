"""pcrl_lib: the tested library behind the PCRLv2 companion notebooks.

PCRLv2: "A Unified Visual Information Preservation Framework for Self-supervised
Pre-training in Medical Image Analysis", Zhou et al., IEEE TPAMI 2023.
"""

__version__ = "0.1.0"
