"""Prefect flows: wiring only; every step calls one function from src/facerealism."""
