from app.models import RequestStatus
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory, UserFactory


def test_call_request_factory_builds_a_consistent_paid_request(db_session) -> None:
    seller = UserFactory()
    request = CallRequestFactory(transaction=TransactionFactory(seller=seller))
    assert request.seller_id == seller.id == request.transaction.seller_id
    assert request.buyer_email == request.transaction.buyer_email
    assert request.status == RequestStatus.PENDING
    assert request.transaction.platform_fee_cents + request.transaction.net_cents == request.transaction.gross_cents


def test_profile_factory_creates_its_user(db_session) -> None:
    profile = ProfileFactory()
    assert profile.user.profile is profile
