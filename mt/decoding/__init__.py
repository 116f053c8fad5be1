"""Search, translation and alignment over any model; ``exported`` registers the engines that
run ``mt export`` directories, so ``Translator.from_dir`` takes them too."""

from mt.decoding import exported as _exported  # noqa: F401  (registers the export runners)
