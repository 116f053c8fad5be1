"""``python -m mt`` is ``mt``; ``torchrun --nproc_per_node=N -m mt train ...`` trains on N processes."""

from mt.cli.main import entry_point

entry_point()
