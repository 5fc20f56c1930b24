"""Pixels -> vectors and classes: decoding images safely, the ImageNet backbones and their
weights, and what the network's classes say about a photo's hashtags."""
