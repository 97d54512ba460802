"""Models of the two custom resources, mirroring `crds/` field for field.

Spec models read what users and the HLO write (unknown fields are ignored here: the API server's
structural schema is the gate for those). Status models are what the hooks write back; every
field here must be declared in the CRD's status schema, or the API server prunes it silently
(tests/k8s checks that nothing is pruned).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import (
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from ieapi.contract import (
    CliArg,
    KeyValue,
    NetworkOverlay,
    Port,
    PublishedPort,
    RegistryAuth,
    none_if_empty,
)

GROUP = "llo.aeros-project.eu"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
SCD_KIND = "ServiceComponentDocker"
DIE_KIND = "DockerInfrastructureElement"
DIE_RESOURCE = "dockerinfrastructureelements"
# Key of the related-objects map in Metacontroller v2 requests (docs/design.md §1).
DIE_RELATED_KEY = f"{DIE_KIND}.{API_VERSION}"

# Annotations an operator or the HLO may set.
ANNOTATION_API_READY = "apiReady"  # on a DIE: "false" cordons the IE (see README)
ANNOTATION_ENTITY_ID = f"{GROUP}/entity-id"  # on an SCD: exact ServiceComponent URN
ANNOTATION_FORCE_DELETE = f"{GROUP}/force-delete"  # on a DIE: release it despite containers
ANNOTATION_ABANDON = f"{GROUP}/abandon-containers"  # on an SCD: finalize without the IE

LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_PART_OF = "app.kubernetes.io/part-of"

_Optional = TypeVar("_Optional", RegistryAuth, NetworkOverlay)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel),
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )


# --------------------------------------------------------------------------- metadata


class ObjectMeta(_Model):
    name: str
    namespace: str | None = None
    uid: str = ""
    generation: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    deletion_timestamp: str | None = None
    finalizers: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- conditions

# SCD condition types, in the order they appear in status (reasons: hooks/reasons.py).
READY = "Ready"                    # summary: the serving container is ready (job: succeeded)
IE_READY = "IEReady"               # the selected IE is usable and answered
CONTAINER_READY = "ContainerReady"  # the serving container runs (job: exited 0)
BROKER_SYNCED = "BrokerSynced"     # Orion-LD holds the ServiceComponentStatus this status calls for
MIGRATED = "Migrated"              # only once selectedIE has changed: is the move done?
CLEANED_UP = "CleanedUp"           # only once there were old containers: are they all deleted?
OVERLAY_READY = "OverlayReady"     # only with a networkOverlay: is wg0 up in the container?
COMPLETE = "Complete"              # jobs only: the container exited (JobSucceeded or JobFailed)
SCD_CONDITION_ORDER = (READY, COMPLETE, IE_READY, CONTAINER_READY, OVERLAY_READY, BROKER_SYNCED,
                       MIGRATED, CLEANED_UP)


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Model):
    """Shaped like metav1.Condition."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


# --------------------------------------------------------------------------- ServiceComponentDocker


class SelectedIE(_Model):
    id: str = Field(description="NGSI-LD id of the InfrastructureElement")
    hostname: str = Field(description="Name of the DockerInfrastructureElement to run on")


class SCDSpec(_Model):
    # aerOS spells it `selectedIE`; to_camel would give `selectedIe`.
    selected_ie: SelectedIE = Field(alias="selectedIE")
    image: str
    image_registry: RegistryAuth | None = None
    is_job: bool = False
    ports: list[Port] = Field(default_factory=list)
    expose_ports: bool = False  # the aerOS model's default (Go's zero value): publish nothing
    env_vars: list[KeyValue] = Field(default_factory=list)
    cli_args: list[CliArg] = Field(default_factory=list)
    privileged: bool = False
    network_overlay: NetworkOverlay | None = None

    @field_validator("image_registry", "network_overlay")
    @classmethod
    def _empty_is_absent(cls, value: _Optional | None) -> _Optional | None:
        """`{}` is what the aerOS LLO API writes for a registry or overlay the HLO did not
        set (Go keeps empty structs): the same as absent."""
        return none_if_empty(value)


class Phase(StrEnum):
    """Summary of an SCD, shown by `kubectl get scd`."""

    PENDING = "Pending"          # waiting for its IE (missing, not ready, cordoned, mismatched)
    DEPLOYING = "Deploying"      # placement recorded, container being created / image pulling
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"      # a job that exited 0
    FAILED = "Failed"            # permanent failure (see reason)
    MIGRATING = "Migrating"      # spec.selectedIE differs from where it runs (make-before-break)
    TERMINATING = "Terminating"  # finalizing
    UNKNOWN = "Unknown"          # its IE could not be asked (like a Pod's Unknown phase)


class Placement(_Model):
    """Where a container of this SCD lives (or is about to): enough to reach it even after
    its DIE is gone. Written to status *before* the container is created, so no container
    can exist on an IE that the status does not name."""

    ie: str = Field(description="DockerInfrastructureElement name")
    ie_id: str = ""
    api_url: str
    token_key: str | None = Field(
        default=None, description="Token file name for this IE (the DIE's spec.api.tokenKey or "
        "name), recorded so the container can be deleted after its DIE is gone")
    insecure_skip_tls_verify: bool = False
    container: str = Field(description="Container name on the IE")

    def same_target(self, other: Placement) -> bool:
        """Same container on the same IE (the endpoint may have moved)."""
        return self.ie == other.ie and self.container == other.container


class Cleanup(Placement):
    reason: str = ""


class Migration(_Model):
    to: Placement


class OverlayInfo(_Model):
    """The container's WireGuard interface as its IE reports it (never a key)."""

    interface: str = "wg0"
    address: str
    mode: str = Field(default="", description="kernel or userspace")
    state: str = Field(description="up, pending or down")
    last_handshake: str = Field(
        default="never", description="Age of the latest handshake in buckets (<3m, <10m, <1h, "
        ">1h, never): a live tunnel with a keepalive always reads <3m, so the status does not "
        "change on every sync")


class ContainerInfo(_Model):
    id: str | None = None
    state: str
    image: str = ""
    image_id: str | None = None
    exit_code: int | None = None
    restart_count: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    ports: list[PublishedPort] = Field(default_factory=list)
    network: str | None = None
    overlay: OverlayInfo | None = None


class FailureInfo(_Model):
    """The container's failure as the IE reported it, shaped after a Pod's
    `state.terminated` with `terminationMessagePolicy: FallbackToLogsOnError`: exit code, time
    and the end of its output (ieapi.tail: at most 80 lines and 2,048 bytes, newest kept).
    Present while the container has failed (exited non-zero, restarting, dead); gone once it
    runs again."""

    exit_code: int | None = None
    finished_at: str | None = None
    restart_count: int = 0
    last_output: str = ""
    last_output_truncated: bool = False


class PullInfo(_Model):
    layers_total: int = 0
    layers_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    message: str = ""


class EntitySource(StrEnum):
    """How status.broker.entityId was found (hooks/brokerstatus.py `entity_target`)."""

    ANNOTATION = "Annotation"  # the exact annotation llo.aeros-project.eu/entity-id
    LABEL = "Label"            # decoded from the instance label; the broker accepted a write
    QUERY = "Query"            # the one entity an idPattern query for the label found


class BrokerInfo(_Model):
    entity_id: str | None = None
    entity_source: EntitySource | None = Field(
        default=None, description="How entityId was found; unset while it is only a guess")
    desired: str | None = Field(
        default=None, description="ServiceComponentStatus this status calls for")
    reported: str | None = Field(
        default=None, description="Last ServiceComponentStatus the broker accepted (e.g. Running)")
    state: Literal["Synced", "Pending", "Failed", "Disabled"] = "Pending"
    message: str = ""


class Names(_Model):
    """The SCD's names on its IE (hooks/names.py): equal to the SCD name when they fit."""

    container: str = Field(description="Container name on the IE, without the IE's prefix")
    alias: str = Field(description="DNS name of the component on its service network")


class SCDStatus(_Model):
    phase: Phase = Phase.PENDING
    reason: str = ""
    message: str = ""
    ie: str | None = Field(default=None, description="IE hostname running the container")
    names: Names | None = None
    placement: Placement | None = None
    migration: Migration | None = None
    pending_cleanups: list[Cleanup] = Field(default_factory=list)
    container: ContainerInfo | None = None
    failure: FailureInfo | None = None
    pull: PullInfo | None = None
    broker: BrokerInfo | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None


# ------------------------------------------------------------------ DockerInfrastructureElement


class DIEApi(_Model):
    url: str = Field(description="Base URL of the IE Docker API, e.g. http://10.0.0.5:8081, or "
                     "the NATS server its agent dials out to (nats:// or tls://)")
    token_key: str | None = Field(
        default=None, description="File name of the bearer token in the hooks' token directory; "
        "defaults to the DIE name")
    insecure_skip_tls_verify: bool = False


class DIESpec(_Model):
    id: str = Field(description="NGSI-LD id of the InfrastructureElement")
    hostname: str
    api: DIEApi


class DIEStatus(_Model):
    api_ready: bool = False
    reason: str = ""
    message: str = ""
    ie_id: str | None = None
    docker_version: str | None = None
    docker_api_version: str | None = None
    os: str | None = None
    architecture: str | None = None
    cpus: int | None = None
    memory_bytes: int | None = None
    allow_privileged: bool | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None


class DIE(_Model):
    api_version: str = API_VERSION
    kind: str = DIE_KIND
    metadata: ObjectMeta
    spec: DIESpec
    status: DIEStatus | None = None

    @property
    def token_key(self) -> str:
        """The file of its IE's token in the hooks' token directory (default: the DIE name)."""
        return self.spec.api.token_key or self.metadata.name

    @property
    def cordoned(self) -> bool:
        return is_cordoned(self.metadata)

    @property
    def force_delete(self) -> bool:
        return is_force_delete(self.metadata)

    def placement(self, container: str) -> Placement:
        """`container` on this DIE's IE, as status records it."""
        return Placement(ie=self.metadata.name, ie_id=self.spec.id, api_url=self.spec.api.url,
                         token_key=self.token_key,
                         insecure_skip_tls_verify=self.spec.api.insecure_skip_tls_verify,
                         container=container)


# The DIE's annotations are read from its metadata alone, so a DIE whose spec does not validate
# still obeys them.

def is_cordoned(meta: ObjectMeta) -> bool:
    """Annotation apiReady: "false": no new placements on the IE; running containers stay."""
    return meta.annotations.get(ANNOTATION_API_READY, "").strip().lower() == "false"


def is_force_delete(meta: ObjectMeta) -> bool:
    """Annotation force-delete: "true": the DIE may go while its IE may still run containers."""
    return meta.annotations.get(ANNOTATION_FORCE_DELETE, "").strip().lower() == "true"


# --------------------------------------------------------------------------- reading objects


def first_error(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    """The first validation error as (dotted field path under `prefix`, message)."""
    err = exc.errors()[0]
    where = ".".join([*([prefix] if prefix else []), *(str(part) for part in err["loc"])])
    return where, str(err["msg"])


def error_text(exc: ValidationError, prefix: str = "") -> str:
    """The first validation error as `field.path: message` (what a user can act on)."""
    where, message = first_error(exc, prefix)
    return f"{where}: {message}" if where else message


def _lenient_status(raw: Any) -> SCDStatus:
    """The old status. A status that no longer validates must not lose the record of where
    containers live (that would leak them), so placement, migration and cleanups are salvaged
    one by one."""
    if not isinstance(raw, dict):
        return SCDStatus()
    try:
        return SCDStatus.model_validate(raw)
    except ValidationError:
        pass
    salvaged: dict[str, Any] = {}
    for key, model in (("placement", Placement), ("migration", Migration),
                       ("broker", BrokerInfo)):
        try:
            salvaged[key] = model.model_validate(raw.get(key))
        except ValidationError:
            continue
    cleanups = []
    for item in raw.get("pendingCleanups") or []:
        try:
            cleanups.append(Cleanup.model_validate(item))
        except ValidationError:
            continue
    return SCDStatus(pending_cleanups=cleanups, **salvaged)


@dataclass(frozen=True)
class SCDObject:
    """An SCD as the hooks see it: metadata and old status always; spec only when valid
    (finalize needs no spec, and an invalid spec must still report and clean up)."""

    metadata: ObjectMeta
    spec: SCDSpec | None
    spec_error: str | None
    status: SCDStatus

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or ""


def read_scd(obj: dict[str, Any]) -> SCDObject:
    """Parse an SCD leniently. Raises ValidationError only when metadata is unusable."""
    metadata = ObjectMeta.model_validate(obj.get("metadata"))
    spec: SCDSpec | None = None
    spec_error: str | None = None
    try:
        spec = SCDSpec.model_validate(obj.get("spec"))
    except ValidationError as exc:
        spec_error = error_text(exc, "spec") if obj.get("spec") is not None else "spec: missing"
    return SCDObject(metadata=metadata, spec=spec, spec_error=spec_error,
                     status=_lenient_status(obj.get("status")))


def read_die(obj: dict[str, Any] | None) -> DIE | None:
    """A related DIE, or None when absent or unusable (treated as missing by the gate)."""
    if obj is None:
        return None
    try:
        return DIE.model_validate(obj)
    except ValidationError:
        return None


def dump(model: BaseModel) -> dict[str, Any]:
    """A status as Kubernetes JSON: camelCase, nulls left out, field order fixed."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
