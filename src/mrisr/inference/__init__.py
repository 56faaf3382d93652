"""Stage 5, super_resolve: sliding windows, DDIM sampling of whole volumes, calibrated intervals, test pairs, a
user's own scans and which model fits one."""
