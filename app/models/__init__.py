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
from app.models.presence import DailyEvent, DailyEventStatus, PresenceInterval, PresenceSource
from app.models.safety import Block, Report, ReporterRole, ReportStatus
from app.models.settlement import (
    CallSettlement,
    ProblemCase,
    ProblemReason,
    ProblemStatus,
    SettlementOutcome,
)
from app.models.users import PasswordResetToken, PhotoDeletion, Profile, Role, SellerAvailability, User

__all__ = [
    "AutomaticPayout",
    "Block",
    "CallRequest",
    "CallSettlement",
    "CancelReason",
    "Checkout",
    "CheckoutStatus",
    "ConnectAccount",
    "DailyEvent",
    "DailyEventStatus",
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
    "PresenceInterval",
    "PresenceSource",
    "ProblemCase",
    "ProblemReason",
    "ProblemStatus",
    "Profile",
    "Rating",
    "Report",
    "ReportStatus",
    "ReporterRole",
    "RequestStatus",
    "Role",
    "SellerAvailability",
    "SettlementOutcome",
    "StripeEvent",
    "StripeEventStatus",
    "Transaction",
    "TransferState",
    "User",
]
