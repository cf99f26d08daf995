"""Training from BasicSR-format options: losses, schedules, EMA, checkpoints, logs and the loop itself."""
