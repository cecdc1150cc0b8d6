"""GAN2Shape engine: single-image 3D shape, albedo, view and light from a pretrained 2D GAN."""

import os

# OpenMP threads that spin while waiting made 2-thread torch runs 5-7x slower whenever the cores are
# shared (measured by the renderer benchmark); sleeping waits cost little on an idle machine.
# Must be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
