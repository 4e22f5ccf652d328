"""The mesh PKI as pure functions: issue, inspect, seal — no store, no environment, no files.

One root of trust for the whole mesh, an intermediate CA per cluster for istiod, and separate
ingress CAs for traffic from outside the mesh. The clock (``now``) is always an argument and
randomness comes only from key generation, serial numbers and nonces, so the use cases
decides when anything is issued and stores it; this package only says *how*.

Names are imported from the module that holds them: ``sealing`` (the state key's AES-GCM, no
X.509), ``keys``, ``certs`` (issuing), ``chain`` (reading and checking), ``records`` (stored
certificates), ``trust`` (root rotation), ``inventory`` (what ``pki status`` shows) and
``bundle`` (what a cluster's ``cacerts`` holds). The package itself imports none of them, so
reading the state key does not load the X.509 machinery.
"""
