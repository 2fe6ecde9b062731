"""One ``prepare_<dataset>`` function per dataset, real or synthetic, each writing the
prepared format of :mod:`pcrl_lib.data.prepared`. Use them through
:func:`pcrl_lib.data.prepare.prepare` or ``python -m pcrl_lib prepare``."""
