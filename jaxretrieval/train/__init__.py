"""The training system: mesh and shardings, optimizer, checkpoints, metrics, and the one train loop."""
