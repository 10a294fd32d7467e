"""facerealism: a learned realism head for fast text-to-image portraits."""
