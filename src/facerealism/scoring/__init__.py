"""Does a candidate head earn promotion: the gate, the negative controls, the fitted baselines, Table 4."""
