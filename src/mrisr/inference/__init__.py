"""Stage 5, super_resolve: sliding windows, DDIM sampling of whole volumes, test pairs and a user's own scans."""
