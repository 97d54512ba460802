"""Every CamelCase `reason` the hooks write, in one place, so README can list them and a typo
cannot invent a new one. The comment after each member is its documentation."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # ---- the selected IE (gate) and calls to its IE API
    IE_READY = "IEReady"                    # DIE usable and its IE API answered
    IE_NOT_FOUND = "IENotFound"             # no DockerInfrastructureElement of that hostname
    IE_ID_MISMATCH = "IEIdMismatch"         # the DIE's spec.id differs from selectedIE.id
    IE_NOT_READY = "IENotReady"             # the DIE's status.apiReady is not true
    IE_CORDONED = "IECordoned"              # DIE annotation apiReady: "false": no new placements
    IE_TERMINATING = "IETerminating"        # the DIE is being deleted: no new placements
    IE_UNREACHABLE = "IEUnreachable"        # connection refused, reset or timed out
    IE_ERROR = "IEError"                    # the IE API answered 5xx (e.g. DockerUnavailable)
    IE_UNAUTHORIZED = "IEUnauthorized"      # the IE API refused the bearer token (401)
    IE_TLS_ERROR = "IETLSError"             # TLS handshake or certificate verification failed
    TOKEN_MISSING = "TokenMissing"  # noqa: S105 - no token file for the DIE in LLO_IE_TOKEN_DIR
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # the hook's time budget ran out before this call

    # ---- placement and the container
    PLACEMENT_RECORDED = "PlacementRecorded"  # the IE is recorded in status; created on next sync
    NOT_PLACED = "NotPlaced"                # no IE usable yet
    IMAGE_PULLING = "ImagePulling"          # the IE is pulling the image (see status.pull)
    PULL_FAILED = "PullFailed"              # the image cannot be pulled
    CONTAINER_CREATED = "ContainerCreated"  # created, not started yet
    CONTAINER_RUNNING = "ContainerRunning"
    CONTAINER_RESTARTING = "ContainerRestarting"
    CONTAINER_PAUSED = "ContainerPaused"
    CONTAINER_EXITED = "ContainerExited"    # a non-job stopped; the next sync starts it again
    CONTAINER_DEAD = "ContainerDead"
    CONTAINER_REMOVING = "ContainerRemoving"
    CONTAINER_MISSING = "ContainerMissing"  # the IE has no such container (e.g. removed by hand)
    CONTAINER_UNKNOWN = "ContainerUnknown"  # the IE could not be asked
    JOB_SUCCEEDED = "JobSucceeded"          # isJob and exit code 0
    JOB_FAILED = "JobFailed"                # isJob and a non-zero exit code
    PORT_IN_USE = "PortInUse"               # a published port is taken on the IE
    PRIVILEGED_NOT_ALLOWED = "PrivilegedNotAllowed"  # the IE refuses privileged containers
    NAME_CONFLICT = "NameConflict"          # an unmanaged container already has the name
    INVALID_SPEC = "InvalidSpec"            # the spec cannot be run (message names the field)
    IE_REJECTED = "IERejected"              # another 4xx from the IE API

    # ---- networkOverlay (condition OverlayReady; same words as ieapi's OverlayReason)
    OVERLAY_UP = "OverlayUp"                # wg0 configured, handshake within 3 minutes
    HANDSHAKE_PENDING = "HandshakePending"  # wg0 configured, waiting for the first handshake
    ENDPOINT_UNREACHABLE = "EndpointUnreachable"  # no (fresh) handshake, or the name not resolved
    CONTAINER_NOT_RUNNING = "ContainerNotRunning"  # the overlay is set up once the container runs
    WIREGUARD_UNSUPPORTED = "WireGuardUnsupported"  # the IE has no WireGuard (see its /v1/info)
    BAD_KEY = "BadKey"                      # privateKey/publicKey is not 32 bytes of base64
    BAD_ADDRESS = "BadAddress"              # internalIp, dns or allowedIps does not parse
    BAD_ENDPOINT = "BadEndpoint"            # endpoint is not host:port
    OVERLAY_SETUP_FAILED = "OverlaySetupFailed"  # the IE could not create or configure wg0

    # ---- migration (spec.selectedIE changed) and cleanups
    MIGRATION_PENDING = "MigrationPending"      # new IE recorded in status.migration.to
    MIGRATION_COMPLETED = "MigrationCompleted"  # new container runs; old one queued for removal
    MIGRATION_ABANDONED = "MigrationAbandoned"  # selectedIE changed again; the target is removed
    CLEANUP_PENDING = "CleanupPending"          # old containers not yet confirmed deleted
    CLEANUP_DONE = "CleanupDone"

    # ---- Orion-LD
    BROKER_SYNCED = "BrokerSynced"          # the broker holds the value in status.broker.reported
    BROKER_DISABLED = "BrokerDisabled"      # LLO_BROKER_URL is empty
    BROKER_PENDING = "BrokerPending"        # nothing sent yet
    BROKER_UNREACHABLE = "BrokerUnreachable"
    BROKER_ERROR = "BrokerError"            # the broker answered 5xx
    BROKER_REJECTED = "BrokerRejected"      # the broker answered another 4xx
    ENTITY_NOT_FOUND = "EntityNotFound"     # no ServiceComponent entity with that id
    ENTITY_AMBIGUOUS = "EntityAmbiguous"    # several entities match the instance label
    NO_ENTITY_ID = "NoEntityId"             # no entity-id annotation, no instance label

    # ---- deletion of an SCD
    TERMINATING = "Terminating"             # finalizing: deleting the containers
    DELETE_PENDING = "DeletePending"        # an IE has not confirmed the delete yet
    DELETED = "Deleted"                     # every IE confirmed
    ORPHAN_GRACE_EXPIRED = "OrphanGraceExpired"  # released after LLO_ORPHAN_GRACE_SECONDS
    CONTAINERS_ABANDONED = "ContainersAbandoned"  # released by abandon-containers: "true"

    # ---- DockerInfrastructureElement
    API_READY = "APIReady"                  # reachable and reports the expected IE id
    REACHABLE = "Reachable"
    IDENTITY_MATCHES = "IdentityMatches"
    IDENTITY_MISMATCH = "IdentityMismatch"  # the IE API reports another ieId than spec.id
    IDENTITY_UNKNOWN = "IdentityUnknown"    # the IE API could not be asked
    CORDONED = "Cordoned"                   # annotation apiReady: "false"
    NOT_CORDONED = "NotCordoned"
    MANAGED_CONTAINERS_REMAIN = "ManagedContainersRemain"  # deletion held (see message)
    NO_MANAGED_CONTAINERS = "NoManagedContainers"
    FORCE_DELETED = "ForceDeleted"          # released by force-delete: "true"

    # ---- the hook itself
    INTERNAL_ERROR = "InternalError"        # a bug: status carried over unchanged, see hook logs
