"""All models, imported here so that ``Base.metadata`` knows every table."""

from app.models.calls import CallRequest, CancelReason, Rating, RequestStatus
from app.models.connect import (
    AutomaticPayout,
    ConnectAccount,
    PayoutMethodKind,
    PayoutSchedule,
    PayoutSettings,
    PayoutTransfer,
    TransferState,
)
from app.models.messaging import EmailStatus, EventLog, OutboxEmail
from app.models.payments import (
    Checkout,
    CheckoutStatus,
    LedgerEntry,
    LedgerKind,
    PaymentState,
    PayoutRequest,
    PayoutStatus,
    StripeEvent,
    StripeEventStatus,
    Transaction,
)
from app.models.safety import Block, Report, ReporterRole, ReportStatus
from app.models.users import PasswordResetToken, PhotoDeletion, Profile, Role, SellerAvailability, User

__all__ = [
    "AutomaticPayout",
    "Block",
    "CallRequest",
    "CancelReason",
    "Checkout",
    "CheckoutStatus",
    "ConnectAccount",
    "EmailStatus",
    "EventLog",
    "LedgerEntry",
    "LedgerKind",
    "OutboxEmail",
    "PasswordResetToken",
    "PaymentState",
    "PayoutMethodKind",
    "PayoutRequest",
    "PayoutSchedule",
    "PayoutSettings",
    "PayoutStatus",
    "PayoutTransfer",
    "PhotoDeletion",
    "Profile",
    "Rating",
    "Report",
    "ReportStatus",
    "ReporterRole",
    "RequestStatus",
    "Role",
    "SellerAvailability",
    "StripeEvent",
    "StripeEventStatus",
    "Transaction",
    "TransferState",
    "User",
]
