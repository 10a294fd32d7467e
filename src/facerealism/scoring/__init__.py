"""Does a candidate head earn promotion: Table 4 (its layout and its rows), the photo rules, the negative controls, the
fitted baselines and the gate."""
