"""Generation backends: procedural offline pairs and diffusers pipelines."""
