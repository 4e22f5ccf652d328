"""The kubeconfig file a Cluster names (the CLI's apply) is read by the one reader: a hostile
one is a KubeconfigError naming the file and why, never a traceback or an expanded bomb."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import HOSTILE_KUBECONFIGS

from meshbridge.errors import KubeconfigError
from meshbridge.kube.fleet import ClusterAccess, client_for
from meshbridge.limits import FILES


@pytest.mark.parametrize("case", ["alias bomb under extensions", "a list as a key",
                                  "an integer of 5,000 digits", "nested 150 deep"])
def test_a_hostile_kubeconfig_file_is_a_kubeconfig_error(tmp_path: Path, case: str) -> None:
    text, why = HOSTILE_KUBECONFIGS[case]
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(KubeconfigError) as caught:
        client_for(ClusterAccess("east", str(path), "x"))
    assert why in str(caught.value) and str(path) in str(caught.value)


def test_a_kubeconfig_file_larger_than_the_limit_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    with path.open("wb") as sparse:
        sparse.truncate(FILES.bytes + 1024)
    with pytest.raises(KubeconfigError, match=f"larger than {FILES.bytes:,} bytes"):
        client_for(ClusterAccess("east", str(path), "x"))
