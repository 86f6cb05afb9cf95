from sqlalchemy import select

from app.models import Profile, Role, User
from app.services.accounts import password_matches
from app.services.fees import split_fee
from app.services.payouts import MIN_PAYOUT_CENTS


def test_seed_demo_creates_a_live_seller_and_an_admin_and_prints_logins(app, db_session) -> None:
    result = app.test_cli_runner().invoke(args=["chatlink", "seed-demo"])
    assert result.exit_code == 0, result.output
    seller = db_session.scalar(select(User).where(User.email == "demo-seller@example.com"))
    admin = db_session.scalar(select(User).where(User.email == "admin@example.com"))
    assert seller.role == Role.SELLER and seller.email_verified_at is not None
    assert admin.role == Role.ADMIN
    assert db_session.scalar(select(Profile.slug).where(Profile.user_id == seller.id)) == "demo"
    assert "demo-seller@example.com  password: demo-seller-password" in result.output
    assert password_matches("demo-seller-password", seller.password_hash)


def test_one_call_to_the_demo_seller_earns_enough_for_a_payout(app, db_session, settings) -> None:
    assert app.test_cli_runner().invoke(args=["chatlink", "seed-demo"]).exit_code == 0
    price = db_session.scalar(select(Profile.price_cents).where(Profile.slug == "demo"))
    _, net = split_fee(price, settings.platform_fee_bps)
    assert net >= MIN_PAYOUT_CENTS


def test_seed_demo_twice_is_harmless(app, db_session) -> None:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["chatlink", "seed-demo"]).exit_code == 0
    assert runner.invoke(args=["chatlink", "seed-demo"]).exit_code == 0
    assert len(db_session.scalars(select(User)).all()) == 2


def test_create_admin_generates_a_password_without_a_terminal(app, db_session) -> None:
    result = app.test_cli_runner().invoke(args=["chatlink", "create-admin", " Ops@Example.com "])
    assert result.exit_code == 0, result.output
    user = db_session.scalar(select(User).where(User.email == "ops@example.com"))
    assert user is not None and user.role == Role.ADMIN
    password = result.output.split("password: ")[1].strip()
    assert password_matches(password, user.password_hash)
