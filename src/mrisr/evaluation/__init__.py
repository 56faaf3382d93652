"""Stage 6 and 7, evaluate and report: metrics, tissue Dice, scoring against the baselines, the HTML report."""
