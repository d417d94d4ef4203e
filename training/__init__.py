"""Offline training: data sets, encoders, margin heads, the training loop, evaluation and export."""
