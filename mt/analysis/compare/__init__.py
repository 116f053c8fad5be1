"""``mt compare``: several models (or their saved records) on one test set, what attention buys and
with what uncertainty. ``entries`` finds and names the models, ``saved_systems`` keeps a model's
translations after it is gone, ``comparison`` scores them side by side, ``report`` writes the tables
and plots, ``job`` is one run of the command (``run_compare``)."""
