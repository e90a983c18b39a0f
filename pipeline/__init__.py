"""Video quality rating: extract frozen-backbone features once, fit a small regressor fast, score in bulk."""

__version__ = "0.1.0"
