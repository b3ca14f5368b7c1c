"""Sub-commands of the ``calibopt`` command: each module has ``register(subparsers)``."""
