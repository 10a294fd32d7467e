"""What does a person read: the HTML report, image grids, progress lines."""
