"""Search, translation and attention read as alignment, over any model."""
