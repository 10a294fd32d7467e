"""People judge realism: a two-alternative rating page, its votes, and the preference they add up to."""
