"""How do the stages run: the DVC-declared DAG, preflight, retries, Dask scale-out, the local Prefect server."""
