"""Stage 2, preprocess: RAS voxel order, N4, skull stripping, registration to the template, QC, normalisation."""
