"""Ratchet Python SDK: log LLM interactions and send user feedback to a Ratchet server.

    from ratchet_sdk import Ratchet, wrap_openai

    ratchet = Ratchet("http://localhost:4400", "rk_sec_...")
    interaction_id = ratchet.log_interaction(model="m", messages=[...], output="...")
    ratchet.feedback("thumbs", interaction_id, value="up")
"""

from ._ids import new_id
from ._openai import (
    FEEDBACK_TOKEN_HEADER,
    INTERACTION_ID_HEADER,
    feedback_token_of,
    interaction_id_of,
    ratchet_feedback_token,
    ratchet_interaction_id,
    wrap_openai,
)
from ._transport import RetryPolicy, backoff_delay, is_retryable_status, parse_retry_after
from ._version import VERSION
from .client import FEEDBACK_KINDS, Ratchet, WriteResult
from .errors import (
    RatchetApiError,
    RatchetDeliveryError,
    RatchetFlushError,
    RatchetQueueFullError,
    RatchetSdkError,
    RatchetValidationError,
)

__version__ = VERSION

__all__ = [
    "FEEDBACK_KINDS",
    "FEEDBACK_TOKEN_HEADER",
    "INTERACTION_ID_HEADER",
    "Ratchet",
    "RatchetApiError",
    "RatchetDeliveryError",
    "RatchetFlushError",
    "RatchetQueueFullError",
    "RatchetSdkError",
    "RatchetValidationError",
    "RetryPolicy",
    "WriteResult",
    "backoff_delay",
    "feedback_token_of",
    "interaction_id_of",
    "is_retryable_status",
    "new_id",
    "parse_retry_after",
    "ratchet_feedback_token",
    "ratchet_interaction_id",
    "wrap_openai",
]
