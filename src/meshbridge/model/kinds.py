"""The five document kinds of the contract, as frozen pydantic models.

Every model forbids unknown fields: a typo in a document must be an error, never a silently
dropped setting. Field names on the wire are camelCase (``serviceAccount``); Python attributes are
snake_case. Defaults are the ones the contract states.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from meshbridge.excerpt import LIMIT, escaped, quoted

API_VERSION = "meshbridge.dev/v1alpha1"

_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_NAME_RE = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_KEY_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PORT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _LABEL_RE.match(value):
        raise ValueError(
            f"{quoted(value)} is not a DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return value


def _dns_name(value: str) -> str:
    if not _DNS_NAME_RE.match(value) or any(len(part) > 63 for part in value.split(".")):
        raise ValueError(f"{quoted(value)} is not a valid DNS name (lower-case, no wildcard)")
    return value


def _label_key(value: str) -> str:
    prefix, _, name = value.rpartition("/")
    if prefix:
        _dns_name(prefix)
    if not name or len(name) > 63 or not _LABEL_KEY_NAME_RE.match(name):
        raise ValueError(f"{quoted(value)} is not a valid label key")
    return value


def _label_value(value: str) -> str:
    if value and (len(value) > 63 or not _LABEL_KEY_NAME_RE.match(value)):
        raise ValueError(f"{quoted(value)} is not a valid label value")
    return value


def _ip_or_dns(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        try:
            _dns_name(value)
        except ValueError:
            raise ValueError(f"{quoted(value)} is neither an IP address nor a DNS name") from None
    return value


def _ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{quoted(value)} is not an IP address") from None
    return value


def _http_path(value: str) -> str:
    if not value.startswith("/") and value != "*" and not value.startswith("*"):
        raise ValueError(f"{quoted(value)} is not a path: it must start with '/' (or be '*' / '*suffix')")
    if "*" in value.strip("*"):
        raise ValueError(f"{quoted(value)}: '*' is only allowed at the start or end of a path")
    return value


DNSLabel = Annotated[str, AfterValidator(_dns_label)]
DNSName = Annotated[str, AfterValidator(_dns_name)]
LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
Labels = dict[LabelKey, LabelValue]
IPAddress = Annotated[str, AfterValidator(_ip)]
Host = Annotated[str, AfterValidator(_ip_or_dns)]
PortNumber = Annotated[int, Field(ge=1, le=65535, strict=True)]
HTTPPath = Annotated[str, AfterValidator(_http_path)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        strict=False,
        hide_input_in_errors=True,
    )


class KeyAlgorithm(StrEnum):
    RSA_2048 = "RSA-2048"
    RSA_3072 = "RSA-3072"
    RSA_4096 = "RSA-4096"
    ECDSA_P256 = "ECDSA-P256"
    ECDSA_P384 = "ECDSA-P384"


class Protocol(StrEnum):
    TCP = "TCP"
    HTTP = "HTTP"
    HTTP2 = "HTTP2"
    GRPC = "GRPC"
    TLS = "TLS"
    HTTPS = "HTTPS"

    @property
    def is_http(self) -> bool:
        return self in (Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC)

    @property
    def is_tls(self) -> bool:
        return self in (Protocol.TLS, Protocol.HTTPS)


# ---------------------------------------------------------------------------------------- meta


class Metadata(_Model):
    name: DNSLabel
    namespace: DNSLabel | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------- Mesh


class CASettings(_Model):
    common_name: Annotated[str, Field(min_length=1, max_length=64)] = "EMCO Root CA"
    organization: Annotated[str, Field(min_length=1, max_length=64)] = "project-emco.io"
    validity_days: Annotated[int, Field(ge=1, le=36500, strict=True)] = 3650
    key_algorithm: KeyAlgorithm = KeyAlgorithm.RSA_4096


class IntermediateCASettings(_Model):
    common_name: Annotated[str, Field(min_length=1, max_length=64)] = "EMCO Intermediate CA"
    organization: Annotated[str, Field(min_length=1, max_length=64)] = "project-emco.io"
    validity_days: Annotated[int, Field(ge=1, le=36500, strict=True)] = 730
    key_algorithm: KeyAlgorithm | None = None  # None: the root's algorithm


class IstioSettings(_Model):
    profile: Annotated[str, Field(min_length=1)] = "minimal"
    outbound_traffic_policy: Literal["REGISTRY_ONLY", "ALLOW_ANY"] = "REGISTRY_ONLY"
    access_log_file: str = "/dev/stdout"
    dns_capture: bool = True
    gateway_node_port: Annotated[int, Field(ge=30000, le=32767, strict=True)] = 32001
    api_version: Literal["v1beta1", "v1"] = "v1beta1"
    # namespaces `apply` creates are labelled istio-injection=enabled (existing ones: untouched)
    sidecar_injection: bool = True
    # how long workload certificates live (pilot-agent's SECRET_TTL); None: Istio's 24 hours
    workload_cert_ttl: str | None = Field(default=None, alias="workloadCertTTL")

    @field_validator("workload_cert_ttl")
    @classmethod
    def _ttl(cls, value: str | None) -> str | None:
        if value is not None:
            seconds = duration_seconds(_duration(value))
            if not MIN_CERT_TTL <= seconds <= MAX_CERT_TTL:
                raise ValueError(
                    f"{value!r}: a workload certificate lifetime is 1m to 2160h (90 days, "
                    "istiod's MAX_WORKLOAD_CERT_TTL)"
                )
        return value

    @property
    def cert_ttl_seconds(self) -> float:
        """How long a workload certificate lives: the setting, else Istio's default (24 h)."""
        if self.workload_cert_ttl is None:
            return ISTIO_CERT_TTL
        return duration_seconds(self.workload_cert_ttl)


class MeshSpec(_Model):
    trust_domain: DNSName = "cluster.local"
    # what `discover: {}` reads from the clusters, and how long a vanished app keeps its routes
    discovery: DiscoverySettings = Field(default_factory=lambda: DiscoverySettings())
    vip_pool: str = "240.0.0.0/4"
    root_ca: CASettings = Field(default_factory=CASettings, alias="rootCA")
    intermediate_ca: IntermediateCASettings = Field(
        default_factory=IntermediateCASettings, alias="intermediateCA"
    )
    istio: IstioSettings = Field(default_factory=IstioSettings)

    @field_validator("vip_pool")
    @classmethod
    def _pool(cls, value: str) -> str:
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            why = escaped(str(exc), 2 * LIMIT)
            raise ValueError(f"{quoted(value)} is not a network in CIDR form: {why}") from None
        if net.version != 4:
            raise ValueError("only IPv4 VIP pools are supported")
        if net.prefixlen > 30:
            raise ValueError(f"{quoted(value)} is too small to hold any VIP (at most /30)")
        return value

    @property
    def pool(self) -> ipaddress.IPv4Network:
        net = ipaddress.ip_network(self.vip_pool)
        assert isinstance(net, ipaddress.IPv4Network)
        return net


# ------------------------------------------------------------------------------------- Cluster


class GatewaySpec(_Model):
    address: Host | None = None  # None: `meshbridge apply` discovers it from the cluster
    port: PortNumber | None = None


class KubeconfigRef(_Model):
    """How to reach the cluster: a kubeconfig file (``path``, read by the CLI's ``apply``) or a
    credential registered on a meshbridge server by an admin (``credential``, by name: the
    server reads no file); one of the two. ``context``: a context of that kubeconfig."""

    path: Annotated[str, Field(min_length=1)] | None = None
    credential: DNSLabel | None = None
    context: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> KubeconfigRef:
        if (self.path is None) == (self.credential is None):
            raise ValueError(
                "give path (a kubeconfig file, for the CLI) or credential (one registered on "
                "the server), not both or neither"
            )
        return self


class ClusterSpec(_Model):
    gateway: GatewaySpec | None = None
    kubeconfig: KubeconfigRef | None = None


# ----------------------------------------------------------------------------------------- App


class ClusterSelector(_Model):
    match_labels: Labels = Field(default_factory=dict)

    @model_validator(mode="after")
    def _not_empty(self) -> ClusterSelector:
        if not self.match_labels:
            raise ValueError("matchLabels must name at least one label")
        return self


class Discover(_Model):
    """``discover: {}``: the clusters the App runs in are read from the clusters themselves
    (docs/intents.md, "Discovered placement"); it takes no field yet."""


class AppSpec(_Model):
    clusters: list[DNSLabel] | None = None
    cluster_selector: ClusterSelector | None = None
    discover: Discover | None = None
    service_account: DNSName | None = None
    selector: Labels | None = None

    @model_validator(mode="after")
    def _placement(self) -> AppSpec:
        if self.discover is not None:
            if self.clusters is not None:
                raise ValueError(
                    "discover reads the clusters the app runs in from the clusters: give "
                    "clusters or discover, not both (clusterSelector may limit where it is "
                    "looked for)"
                )
        elif (self.clusters is None) == (self.cluster_selector is None):
            raise ValueError("exactly one of clusters and clusterSelector must be given "
                             "(or discover: {})")
        if self.clusters is not None:
            if not self.clusters:
                raise ValueError("clusters must name at least one cluster")
            if len(set(self.clusters)) != len(self.clusters):
                raise ValueError("clusters lists a cluster twice")
        if self.selector is not None and not self.selector:
            raise ValueError("selector must not be empty (omit it for {app: <name>})")
        return self


# ------------------------------------------------------------------------------- InboundIntent


class AccessPoint(_Model):
    action: Literal["ALLOW", "DENY"] = "ALLOW"
    paths: list[HTTPPath] = Field(default_factory=list)
    methods: list[Annotated[str, Field(pattern=r"^[A-Z]+$")]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> AccessPoint:
        if not self.paths and not self.methods:
            raise ValueError("an access point names paths, methods or both")
        return self


class Client(_Model):
    app: DNSLabel
    namespace: DNSLabel | None = None
    access_points: list[AccessPoint] | None = None


class LoadBalancing(_Model):
    weights: dict[DNSLabel, Annotated[int, Field(ge=0, le=100, strict=True)]]


def _duration(value: str) -> str:
    """An Istio duration as users write it: a whole number and a unit (``500ms``, ``5s``, ``2m``)."""
    m = re.fullmatch(r"([0-9]{1,9})(ms|s|m|h)", value)
    if m is None:
        raise ValueError(f"{quoted(value)} is not a duration such as 500ms, 5s or 2m")
    if int(m.group(1)) == 0:
        raise ValueError("a duration must be longer than 0")
    return value


Duration = Annotated[str, AfterValidator(_duration)]

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
ISTIO_CERT_TTL = 24 * 3600.0  # pilot-agent's SECRET_TTL default
MIN_CERT_TTL = 60.0
MAX_CERT_TTL = 90 * 24 * 3600.0  # istiod's MAX_WORKLOAD_CERT_TTL default


def duration_seconds(value: str) -> float:
    """A valid ``Duration`` in seconds (``500ms`` -> 0.5, ``5m`` -> 300)."""
    number = value.rstrip("smh")
    return int(number) * _UNIT_SECONDS[value[len(number):]]


class DiscoverySettings(_Model):
    """How placements of Apps with ``discover: {}`` are read and kept (docs/intents.md,
    "Discovered placement")."""

    # the label a client-only app's workloads and pods carry: <labelKey>: <App name>
    label_key: LabelKey = "app"
    # how long an app gone from every cluster keeps its last known placement
    grace_period: Duration = "5m"

    @property
    def grace_seconds(self) -> float:
        return duration_seconds(self.grace_period)


class OutlierDetection(_Model):
    """When a client's proxy stops sending to one cluster's instances (Istio's knobs)."""

    consecutive_5xx_errors: Annotated[int, Field(ge=0, le=1000, strict=True)] = Field(
        default=5, alias="consecutive5xxErrors"
    )
    consecutive_gateway_errors: Annotated[int, Field(ge=0, le=1000, strict=True)] = 0
    interval: Duration = "5s"
    base_ejection_time: Duration = "30s"
    max_ejection_percent: Annotated[int, Field(ge=0, le=100, strict=True)] = 100

    @model_validator(mode="after")
    def _detects(self) -> OutlierDetection:
        if self.consecutive_5xx_errors == 0 and self.consecutive_gateway_errors == 0:
            raise ValueError("consecutive5xxErrors and consecutiveGatewayErrors are both 0: "
                             "no failure would ever be detected")
        return self


class Failover(_Model):
    outlier_detection: OutlierDetection = Field(default_factory=OutlierDetection)
    priority: list[DNSLabel] | None = None

    @model_validator(mode="after")
    def _priority(self) -> Failover:
        if self.priority is not None:
            if not self.priority:
                raise ValueError("priority must name at least one cluster (omit it for the "
                                 "locality order)")
            if len(set(self.priority)) != len(self.priority):
                raise ValueError("priority lists a cluster twice")
        return self


TLSMode = Literal["MUTUAL", "SIMPLE", "PASSTHROUGH"]


class ExternalAccess(_Model):
    """Reachable from outside at ``host``, port 443 of the ingress gateway.

    MUTUAL and SIMPLE terminate TLS at the gateway with a certificate of the mesh's ingress PKI
    (MUTUAL also wants a client certificate); PASSTHROUGH routes the caller's TLS by SNI to the
    service, which presents its own certificate: the one mode for a TLS or HTTPS service.
    """

    host: DNSName
    tls_mode: TLSMode = "MUTUAL"

    @property
    def terminated(self) -> bool:
        """TLS ends at the gateway (SIMPLE, MUTUAL): it needs an ingress credential."""
        return self.tls_mode != "PASSTHROUGH"


class InboundIntentSpec(_Model):
    app: DNSLabel
    service_name: DNSLabel | None = None
    port: PortNumber
    protocol: Protocol = Protocol.TCP
    clients: list[Client] = Field(default_factory=list)
    load_balancing: LoadBalancing | None = None
    failover: Failover | None = None
    external: ExternalAccess | None = None


# ----------------------------------------------------------------------------- ExternalService


class ServicePort(_Model):
    number: PortNumber
    name: Annotated[str, AfterValidator(_dns_label)]
    protocol: Literal["TCP", "HTTP", "HTTP2", "GRPC", "TLS", "HTTPS", "MONGO"] = "TCP"


class Endpoint(_Model):
    address: Host
    ports: dict[str, PortNumber] | None = None
    labels: Labels | None = None


class ExternalServiceSpec(_Model):
    hosts: Annotated[list[DNSName], Field(min_length=1)]
    addresses: list[IPAddress] | None = None
    ports: Annotated[list[ServicePort], Field(min_length=1)]
    resolution: Literal["STATIC", "DNS", "NONE"] | None = None
    endpoints: list[Endpoint] = Field(default_factory=list)
    clusters: list[DNSLabel] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ExternalServiceSpec:
        if self.resolution == "STATIC" and not self.endpoints:
            raise ValueError("resolution STATIC needs endpoints")
        if self.effective_resolution == "STATIC":
            for endpoint in self.endpoints:
                _ip(endpoint.address)
        names = [p.name for p in self.ports]
        if len(set(names)) != len(names):
            raise ValueError("two ports share a name")
        numbers = [p.number for p in self.ports]
        if len(set(numbers)) != len(numbers):
            raise ValueError("two ports share a number")
        if len(set(self.hosts)) != len(self.hosts):
            raise ValueError("hosts lists a host twice")
        return self

    @property
    def effective_resolution(self) -> str:
        if self.resolution is not None:
            return self.resolution
        return "STATIC" if self.endpoints else "DNS"

    @property
    def needs_vip(self) -> bool:
        """A VIP is allocated when none is given and a port is plain TCP (no SNI or Host)."""
        return not self.addresses and any(p.protocol in ("TCP", "MONGO") for p in self.ports)


# ---------------------------------------------------------------------------------- documents


class _Document(_Model):
    api_version: Literal["meshbridge.dev/v1alpha1"] = Field(alias="apiVersion")
    metadata: Metadata

    # Plain properties: snapshots read these tens of thousands of times per build, and on
    # Python 3.11 a cached_property's first read (a lock, once per document and name) costs more
    # than all the plain reads of a build (on the 100-cluster mesh: 16,000 first reads, ~0.1 s).
    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or ""


class _ClusterScoped(_Document):
    @model_validator(mode="after")
    def _no_namespace(self) -> _ClusterScoped:
        if self.metadata.namespace is not None:
            raise ValueError(
                f"{type(self).__name__} is cluster-scoped: metadata.namespace is not allowed"
            )
        return self


class _Namespaced(_Document):
    @model_validator(mode="after")
    def _namespace(self) -> _Namespaced:
        if self.metadata.namespace is None:
            raise ValueError(f"{type(self).__name__} is namespaced: metadata.namespace is required")
        return self


class Mesh(_ClusterScoped):
    kind: Literal["Mesh"]
    spec: MeshSpec = Field(default_factory=MeshSpec)


class Cluster(_ClusterScoped):
    kind: Literal["Cluster"]
    spec: ClusterSpec = Field(default_factory=ClusterSpec)


class App(_Namespaced):
    kind: Literal["App"]
    spec: AppSpec

    @property
    def service_account(self) -> str:
        return self.spec.service_account or self.name

    @property
    def pod_selector(self) -> dict[str, str]:
        return dict(self.spec.selector) if self.spec.selector else {"app": self.name}


class InboundIntent(_Namespaced):
    kind: Literal["InboundIntent"]
    spec: InboundIntentSpec

    @property
    def service_name(self) -> str:
        return self.spec.service_name or self.spec.app


class ExternalService(_Namespaced):
    kind: Literal["ExternalService"]
    spec: ExternalServiceSpec


Document = Mesh | Cluster | App | InboundIntent | ExternalService

DOCUMENT_MODELS: dict[str, type[Mesh | Cluster | App | InboundIntent | ExternalService]] = {
    "Mesh": Mesh,
    "Cluster": Cluster,
    "App": App,
    "InboundIntent": InboundIntent,
    "ExternalService": ExternalService,
}
