"""Does a candidate head earn promotion: the gate, the negative controls, the fitted baselines, the photo rules, Table 4."""
