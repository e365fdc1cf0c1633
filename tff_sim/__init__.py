"""Federated simulation of self-supervised audio training in TensorFlow Federated."""
