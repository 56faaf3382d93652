"""Stage 3, pairs: the forward model that makes an LR scan from an HR scan, and what uses that operator."""
