"""How fast and how costly is a model: FLOPs per image counted, seconds and memory measured."""
