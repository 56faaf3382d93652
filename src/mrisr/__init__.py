"""mrisr: diffusion super-resolution of brain MRI.

One subpackage per stage of the workflow, in the order data flows through
them; a module imports only from its own stage, earlier stages and the
shared core:

- :mod:`mrisr.data`: raw T1w scans (the embedded brains, your folder or BIDS
  dataset, HCP over S3) and the train/val/test split.
- :mod:`mrisr.preprocess`: voxel order, bias field, skull stripping,
  registration, QC, intensity normalisation.
- :mod:`mrisr.pairs`: the LR scans made from the HR ones (the forward model).
- :mod:`mrisr.model`: networks, diffusion, the model file, training.
- :mod:`mrisr.inference`: sliding windows, DDIM sampling, the workflow's test
  pairs and a user's own scans.
- :mod:`mrisr.evaluation`: metrics, tissue Dice, scoring, the report.

The shared core: :mod:`mrisr.io` (NIfTI in and out, errors),
:mod:`mrisr.config`, :mod:`mrisr.grids` (factors and edge-aligned grids),
:mod:`mrisr.figures`, :mod:`mrisr.provenance` and :mod:`mrisr.workflow`
(the bridge to Snakemake); :mod:`mrisr.cli` is the ``mrisr`` command.
"""
