"""Datasets: the built-in synthetic corpus, real-data loaders and tf.data pipelines."""
