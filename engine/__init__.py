"""GAN2Shape engine: single-image 3D shape, albedo, view and light from a pretrained 2D GAN."""

__version__ = "0.1.0"
