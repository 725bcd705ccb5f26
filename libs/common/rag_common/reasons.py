"""Every stable `ErrorInfo.reason` the suite sends, named once: its wire string, the status
it comes with and what happened. Code raises `Reason.X`; the README's error table is made
from this (`python -m scripts.error_table`), and a test keeps the two the same."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """A reason: equal to its wire string, with the status code it is sent with and what it
    means to whoever reads it."""

    status: str
    meaning: str

    def __new__(cls, value: str, status: str, meaning: str) -> Reason:
        """A member from its (wire string, status, meaning)."""
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.meaning = meaning
        return member

    # --- the caller's request ------------------------------------------------------------
    INVALID_ARGUMENT = (
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "a malformed request: an empty or oversized question, `top_k` out of range, a bad "
        "document or id, bytes that are not a message of the method; `field` names it "
        "(e.g. `options.top_k`, `documents[2].id`, `request`)",
    )
    UNKNOWN_FILTER_OPERATOR = (
        "UNKNOWN_FILTER_OPERATOR",
        "INVALID_ARGUMENT",
        "a metadata filter with an operator the store does not know",
    )
    UNSUPPORTED_MEDIA_TYPE = (
        "UNSUPPORTED_MEDIA_TYPE",
        "INVALID_ARGUMENT",
        "a document's `content` is none of PDF, HTML, DOCX or UTF-8 text, or not the "
        "`media_type` it was declared as",
    )
    ENCRYPTED_DOCUMENT = (
        "ENCRYPTED_DOCUMENT",
        "INVALID_ARGUMENT",
        "a password-protected PDF or Office file: send it decrypted",
    )
    UNREADABLE_DOCUMENT = (
        "UNREADABLE_DOCUMENT",
        "INVALID_ARGUMENT",
        "a document's `content` is damaged: its format's parser could not read it",
    )
    DOCUMENT_TOO_COMPLEX = (
        "DOCUMENT_TOO_COMPLEX",
        "INVALID_ARGUMENT",
        "converting a document went past the sandbox's memory, CPU time, wall time or "
        "output limits (a decompression bomb, a PDF of millions of objects, endless nesting)",
    )
    NO_TEXT = (
        "NO_TEXT",
        "INVALID_ARGUMENT",
        "a document holds no text to store: a PDF of scanned pages only, an empty page",
    )
    NOT_FOUND = ("NOT_FOUND", "NOT_FOUND", "the named thing does not exist")
    BACKUP_NOT_SUPPORTED = (
        "BACKUP_NOT_SUPPORTED",
        "FAILED_PRECONDITION",
        "a backup of a store that keeps no snapshots (qdrant-client's local mode)",
    )
    FAILED_PRECONDITION = (
        "FAILED_PRECONDITION",
        "FAILED_PRECONDITION",
        "a valid call this deployment cannot serve",
    )

    # --- who the caller is -----------------------------------------------------------------
    MISSING_CREDENTIALS = (
        "MISSING_CREDENTIALS",
        "UNAUTHENTICATED",
        "a public call without `authorization` metadata",
    )
    MALFORMED_CREDENTIALS = (
        "MALFORMED_CREDENTIALS",
        "UNAUTHENTICATED",
        "`authorization` that is not `Bearer <key or token>`",
    )
    INVALID_API_KEY = ("INVALID_API_KEY", "UNAUTHENTICATED", "an API key that is not configured")
    EXPIRED_TOKEN = ("EXPIRED_TOKEN", "UNAUTHENTICATED", "an OIDC token past its `exp`")
    INVALID_TOKEN = (
        "INVALID_TOKEN",
        "UNAUTHENTICATED",
        "an OIDC token not from the issuer, for another audience, or without a tenant",
    )
    JWKS_REFRESHING = (
        "JWKS_REFRESHING",
        "UNAVAILABLE",
        "a token signed with a key the issuer just published, being fetched: retry in a second",
    )
    # Internal ports: the suite's own signed credential (singular, as the metadata key).
    MISSING_CREDENTIAL = (
        "MISSING_CREDENTIAL",
        "UNAUTHENTICATED",
        "an internal call without the suite's signed credential",
    )
    EXPIRED_CREDENTIAL = (
        "EXPIRED_CREDENTIAL",
        "UNAUTHENTICATED",
        "an internal credential past its expiry (its call's deadline, 60 s at most)",
    )
    INVALID_CREDENTIAL = (
        "INVALID_CREDENTIAL",
        "UNAUTHENTICATED",
        "an internal credential signed with another key, for another service or another method",
    )
    NO_IDENTITY_KEY = (
        "NO_IDENTITY_KEY",
        "UNAUTHENTICATED",
        "`RAG_IDENTITY_KEY` is not set: internal calls can be neither signed nor checked",
    )
    MISSING_IDENTITY = (
        "MISSING_IDENTITY",
        "UNAUTHENTICATED",
        "an internal call that does not say which caller it acts for",
    )
    UNAUTHENTICATED = ("UNAUTHENTICATED", "UNAUTHENTICATED", "the caller is not known")
    ROLE_REQUIRED = (
        "ROLE_REQUIRED",
        "PERMISSION_DENIED",
        "a caller without the role the call needs (a reader ingesting, a tenant admin asking "
        "for a backup); `required_role` names it",
    )
    PERMISSION_DENIED = ("PERMISSION_DENIED", "PERMISSION_DENIED", "the call is not allowed")

    # --- fair use ----------------------------------------------------------------------------
    KEYLESS_CALLS = (
        "KEYLESS_CALLS",
        "RESOURCE_EXHAUSTED",
        "too many health or reflection calls (no key) open at once: over an eighth of the "
        "call slots, or 8 from one address (with `RetryInfo`)",
    )
    IDLE = ("IDLE", "DEADLINE_EXCEEDED", "a reflection stream that sent nothing for 10 s")
    RATE_LIMITED = (
        "RATE_LIMITED",
        "RESOURCE_EXHAUSTED",
        "over the tenant's or the key's rate (with `RetryInfo`)",
    )
    TENANT_CONCURRENCY = (
        "TENANT_CONCURRENCY",
        "RESOURCE_EXHAUSTED",
        "over the tenant's calls at once",
    )
    CONNECTION_STREAMS = (
        "CONNECTION_STREAMS",
        "RESOURCE_EXHAUSTED",
        "over this connection's open streams",
    )
    TENANT_OVER_SHARE = (
        "TENANT_OVER_SHARE",
        "RESOURCE_EXHAUSTED",
        "over an even share of the calls while the replica is busy (with `RetryInfo`)",
    )
    LLM_BUDGET_EXHAUSTED = (
        "LLM_BUDGET_EXHAUSTED",
        "RESOURCE_EXHAUSTED",
        "the tenant spent today's LLM budget and there are no sources to answer with "
        "(`RetryInfo`: until midnight UTC)",
    )
    CACHED_ONLY = (
        "CACHED_ONLY",
        "RESOURCE_EXHAUSTED",
        "overloaded: only cached answers are served, and this question has none",
    )
    RESOURCE_EXHAUSTED = (
        "RESOURCE_EXHAUSTED",
        "RESOURCE_EXHAUSTED",
        "a limit was reached; retry later",
    )

    # --- dependencies and the service itself ------------------------------------------------
    EMBEDDING_SERVER_FAILED = (
        "EMBEDDING_SERVER_FAILED",
        "UNAVAILABLE",
        "the remote embedding server (RAG_EMBEDDING_BACKEND openai or tei) failed, timed out "
        "or rate-limited past its retries, or its breaker is open",
    )
    REINDEXING = (
        "REINDEXING",
        "UNAVAILABLE",
        "the store's vectors are being rebuilt with a new embedding model (`rag reindex`); "
        "retry once it is done",
    )
    EMBEDDING_MODEL_MISMATCH = (
        "EMBEDDING_MODEL_MISMATCH",
        "FAILED_PRECONDITION",
        "the vector store's vectors were made by another embedding model (or dimension) "
        "than the one configured: configure that model, or rebuild with `rag reindex`",
    )
    DEPENDENCY_UNAVAILABLE = (
        "DEPENDENCY_UNAVAILABLE",
        "UNAVAILABLE",
        "an internal service is down (`dependency`: e.g. `retrieval`)",
    )
    CIRCUIT_OPEN = (
        "CIRCUIT_OPEN",
        "UNAVAILABLE",
        "an internal service failing or hanging, its circuit breaker open: calls refused at "
        "once while it recovers (`dependency`)",
    )
    DEPENDENCY_AUTH_FAILED = (
        "DEPENDENCY_AUTH_FAILED",
        "UNAVAILABLE",
        "an internal service refuses this one's credentials (keys or certificates differ "
        "between services)",
    )
    CORPUS_VERSION_UNAVAILABLE = (
        "CORPUS_VERSION_UNAVAILABLE",
        "UNAVAILABLE",
        "an ingest or delete while the corpus version cannot be recorded (Redis configured "
        "but unreachable); nothing was changed (`dependency`: `redis`)",
    )
    MAINTENANCE = (
        "MAINTENANCE",
        "UNAVAILABLE",
        "an operator turned maintenance on; the message is theirs",
    )
    MAINTENANCE_NOT_SHARED = (
        "MAINTENANCE_NOT_SHARED",
        "UNAVAILABLE",
        "the operator's maintenance switch could not be shared (Redis down)",
    )
    NOT_READY = ("NOT_READY", "UNAVAILABLE", "the model is still loading")
    NO_ANSWER = (
        "NO_ANSWER",
        "UNAVAILABLE",
        "no provider could write an answer and no sources were found in time",
    )
    STREAM_INTERRUPTED = (
        "STREAM_INTERRUPTED",
        "UNAVAILABLE",
        "a streamed answer broke off after some text (the last message, marked `partial`, "
        "holds it)",
    )
    VECTOR_STORE_FAILED = ("VECTOR_STORE_FAILED", "UNAVAILABLE", "the vector store failed")
    RERANKER_FAILED = (
        "RERANKER_FAILED",
        "UNAVAILABLE",
        "the rerank server failed or answered what cannot be read (answers then come in "
        "fused order, flagged `no_rerank`)",
    )
    ALL_PROVIDERS_FAILED = (
        "ALL_PROVIDERS_FAILED",
        "UNAVAILABLE",
        "generation: every provider failed or is cooling down (`providers`)",
    )
    UNAVAILABLE = ("UNAVAILABLE", "UNAVAILABLE", "a dependency failed; retrying may succeed")
    DEADLINE_EXCEEDED = ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED", "the deadline passed")
    UNIMPLEMENTED = (
        "UNIMPLEMENTED",
        "UNIMPLEMENTED",
        "a method this release of the service does not have (an older replica during a "
        "rolling upgrade); the caller falls back to what it has",
    )
    INTERNAL = (
        "INTERNAL",
        "INTERNAL",
        "a bug of ours: the message is `internal error`, the traceback only in the log",
    )

    # --- one LLM provider, in generation's logs, metrics and `failed_providers` -------------
    PROVIDER_FAILED = ("PROVIDER_FAILED", "UNAVAILABLE", "a provider failed")
    PROVIDER_TIMEOUT = ("PROVIDER_TIMEOUT", "UNAVAILABLE", "a provider did not answer in time")
    PROVIDER_UNREACHABLE = ("PROVIDER_UNREACHABLE", "UNAVAILABLE", "a provider's API unreachable")
    PROVIDER_RATE_LIMITED = ("PROVIDER_RATE_LIMITED", "UNAVAILABLE", "a provider said 429")
    PROVIDER_AUTH_FAILED = (
        "PROVIDER_AUTH_FAILED",
        "UNAVAILABLE",
        "a provider refused our API key",
    )
    PROVIDER_SERVER_ERROR = ("PROVIDER_SERVER_ERROR", "UNAVAILABLE", "a provider said 5xx")
    PROVIDER_BAD_REQUEST = (
        "PROVIDER_BAD_REQUEST",
        "UNAVAILABLE",
        "a provider refused our request (4xx); never counted by its breaker",
    )
    PROVIDER_BAD_RESPONSE = (
        "PROVIDER_BAD_RESPONSE",
        "UNAVAILABLE",
        "a provider's reply could not be read",
    )
    PROVIDER_STREAM_ERROR = (
        "PROVIDER_STREAM_ERROR",
        "UNAVAILABLE",
        "a provider's stream failed",
    )
    PROVIDER_NOT_READY = ("PROVIDER_NOT_READY", "UNAVAILABLE", "the local model is not loaded")
    PROVIDER_TOO_SLOW = (
        "PROVIDER_TOO_SLOW",
        "UNAVAILABLE",
        "the local model declined: at its measured pace not even one source and a short "
        "answer fit the time left; never counted by its breaker",
    )


class Degradation(StrEnum):
    """Why an answer is less than whole: the values of a QueryResponse's `degraded`."""

    RETRIEVAL_CACHED = "retrieval_cached"  # sources from an earlier identical question
    NO_CONTEXT = "no_context"  # retrieval late and nothing cached: answered without sources
    LLM_UNAVAILABLE = "llm_unavailable"  # no provider answered in time: the sources listed
    LLM_BUDGET_EXHAUSTED = "llm_budget_exhausted"  # the tenant's LLM budget is spent
    NO_RERANK = "no_rerank"  # the reranker late, down or shedding: fused order
    CACHED_ONLY = "cached_only"  # overloaded (or dependencies down): a cached answer
