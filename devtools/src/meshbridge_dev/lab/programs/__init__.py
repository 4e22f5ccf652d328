"""The lab's own programs, each run as ``python -m meshbridge_dev.lab.programs.NAME`` inside
the lab's network namespaces: ``stub`` (the workload behind every sidecar), ``client`` (the
requester a lab check reads its verdict from) and ``dns`` (the cluster-DNS stand-in). They
import nothing else of the lab."""
