"""Stage 4, train: the networks, the diffusion process, the model file and its settings, training data and loop."""
