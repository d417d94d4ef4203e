"""Embedder bundles, corpus embedding and FAISS index bundles (no web framework here)."""
