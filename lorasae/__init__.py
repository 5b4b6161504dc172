"""lorasae: Low-Rank Adapting Models for Sparse Autoencoders."""
