"""The running service's own domain: what ``meshbridge serve`` keeps beyond one command.

The catalog of stored documents (parsed, validated, planned, kept warm), per-cluster manifests,
the background reconciler and the cluster leases that let several replicas share it, API tokens
and roles, and the cluster credentials admins register. The HTTP routes (``api``) call into it;
it calls the use cases (``usecases``) and the store.
"""
