"""Drift against the training baseline (issue 12).

`profile` captures a reference profile of the training (or validation) data:
per-feature histograms with bounds chosen for each feature, category shares,
missing rates, the prediction distribution. `stats` compares live counts over
those same bounds with the profile, per feature, choosing the test the way
Evidently's data-drift preset does. Both are pure apart from `profile.read_table`.
"""
