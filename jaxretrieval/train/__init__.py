"""The training system: mesh and shardings, optimizer, checkpoints, run logs, the tasks, and the one train loop."""
