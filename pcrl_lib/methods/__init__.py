"""Self-supervised methods behind one interface (see :mod:`pcrl_lib.methods.base`)."""

from pcrl_lib.methods.pcrlv2 import PCRLv2, PCRLv2Config, pcrlv2_config

__all__ = ["PCRLv2", "PCRLv2Config", "pcrlv2_config"]
