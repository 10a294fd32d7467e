"""Where do the pairs come from and which are held out: the artifact catalog, the IMDb name source, the split."""
