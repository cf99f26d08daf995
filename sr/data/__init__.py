"""Training and evaluation data: paired datasets, degradations (MATLAB-exact bicubic resize) and loaders."""
