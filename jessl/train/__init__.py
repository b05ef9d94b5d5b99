"""Training: per-step schedules, optimizers (LARS, parameter groups), and the trainer loop."""
