"""Applies across many machines: hosts walk on Dask distributed workers (docs/distributed.md).

- `address.py`: the `--cluster` setting (`local:N`, `tls://...`, `tcp://...`) and its TLS files;
- `client.py`: reaching the scheduler (or starting a local cluster), workers and their zones;
- `wire.py`: the queues a run talks over, and the worker side's event forwarder;
- `coordination.py`: the run's Coordinator served from the controller to remote walkers;
- `shard.py`: what a worker receives (a shard of a batch's hosts) and walks;
- `runner.py`: `ClusterRunner`, the executor's Runner that hands shards to workers.
"""
