"""Stage 1, fetch: raw T1w scans from the embedded brains, your own files or HCP, the data cache, the split."""
