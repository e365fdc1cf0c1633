"""Audio front-end, encoders, self-supervised tasks, datasets and evaluation."""
