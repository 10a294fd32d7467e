"""Benchmarks and local-server helpers: measurement scripts and throwaway servers, kept out of the library's core."""

# flux.py     pipelines loaded once vs reloaded per pair (python -m facerealism.bench.flux)
# shards.py   sharded generation, 1 vs 2 Dask workers (python -m facerealism.bench.shards)
# train.py    bf16 / channels-last training steps vs fp32 (python -m facerealism.bench.train)
# memory.py   peak RSS of train and evaluate at N and 8N pairs (python -m facerealism.bench.memory)
# gpu.py      the GPU kit behind `facerealism gpu-bench`
# servers.py  MLflow, Dask and Prefect servers and Postgres databases on free localhost ports
