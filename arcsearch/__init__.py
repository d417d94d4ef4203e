"""arcsearch: similarity search for images and texts with ArcFace-trained embeddings."""

__version__ = "0.1.0"
