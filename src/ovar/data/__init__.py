"""Datasets: list files, class lists, bundled protocol splits, loaders and subsets."""
