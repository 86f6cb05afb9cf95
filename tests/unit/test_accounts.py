"""The accounts service: sign-up, log-in with lockout, email verification, password reset."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from app.models import EventLog, OutboxEmail, PasswordResetToken, Role, User
from app.refusals import Refusal
from app.services import accounts
from app.services.lockouts import UnknownEmailLockouts, describe_wait, lock_seconds
from tests.factories import PASSWORD, UserFactory

APP_URL = "https://chatlink.test"
SECRET = "unit-test-secret-key-0123456789abcdef"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GOOD_PASSWORD = "a fine long password"


def events(session, type_: str) -> list[EventLog]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(EventLog).where(EventLog.type == type_)))


def outbox(session, template: str) -> list[OutboxEmail]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(OutboxEmail).where(OutboxEmail.template == template)))


@pytest.fixture
def unknown(settings, redis) -> UnknownEmailLockouts:  # type: ignore[no-untyped-def]
    return UnknownEmailLockouts(redis, f"chatlink:{settings.celery_queue}:lockout")


def sign_up(session, email: str = "new.seller@example.com", password: str = GOOD_PASSWORD):  # type: ignore[no-untyped-def]
    """Sign up and return the account (sign_up itself returns nothing, so no caller can leak it)."""
    accounts.sign_up(session, email, password, now=NOW, app_url=APP_URL, secret_key=SECRET)
    return session.scalar(select(User).where(User.email == accounts.normalise_email(email)))


class TestSignUp:
    def test_creates_an_unverified_seller_with_a_normalised_email_and_a_bcrypt_hash(self, db_session) -> None:
        user = sign_up(db_session, email="  New.Seller@Example.COM ")
        stored = db_session.scalar(select(User).where(User.id == user.id))
        assert stored.email == "new.seller@example.com"
        assert stored.role == Role.SELLER and stored.email_verified_at is None
        assert stored.password_hash.startswith("$2b$12$")
        assert "a fine long password" not in stored.password_hash
        assert accounts.password_matches("a fine long password", stored.password_hash)
        assert [e.ref_id for e in events(db_session, "auth.signup")] == [str(user.id)]

    def test_queues_a_verification_email_whose_link_verifies_this_user(self, db_session) -> None:
        user = sign_up(db_session)
        [email] = outbox(db_session, "verify_email")
        assert email.recipient == user.email
        assert email.dedupe_key == f"verify_email:signup:{user.id}"
        url = email.context["verify_url"]
        assert url.startswith(f"{APP_URL}/verify-email/")
        verified = accounts.verify_email(db_session, url.rsplit("/", 1)[1], secret_key=SECRET, now=NOW)
        assert verified.id == user.id and verified.email_verified_at == NOW

    @pytest.mark.parametrize(
        ("password", "message"),
        [("too short", "at least 10 characters"), ("Password123", "most commonly used")],
    )
    def test_a_weak_password_is_refused_naming_the_rule_and_nothing_is_stored(
        self, db_session, password, message
    ) -> None:
        with pytest.raises(accounts.InvalidInput) as refused:
            sign_up(db_session, password=password)
        assert list(refused.value.fields) == ["password"] and message in refused.value.message
        assert db_session.scalar(select(User).where(User.email == "new.seller@example.com")) is None
        assert outbox(db_session, "verify_email") == []

    @pytest.mark.parametrize("email", ["", "not-an-email", "two@@example.com", "space in@example.com", "a@b"])
    def test_an_invalid_email_is_refused_on_the_email_field(self, db_session, email: str) -> None:
        with pytest.raises(accounts.InvalidInput) as refused:
            sign_up(db_session, email=email)
        assert list(refused.value.fields) == ["email"]

    def test_a_taken_email_whatever_its_case_gets_a_note_and_no_account(self, db_session) -> None:
        taken = UserFactory(email="taken@example.com")
        accounts.sign_up(db_session, " TAKEN@example.com", GOOD_PASSWORD, now=NOW, app_url=APP_URL, secret_key=SECRET)
        assert len(db_session.scalars(select(User)).all()) == 1
        [note] = outbox(db_session, "signup_attempt")
        assert note.recipient == taken.email and outbox(db_session, "verify_email") == []
        assert [e.ref_id for e in events(db_session, "auth.signup_attempt")] == [str(taken.id)]


class TestLogIn:
    def log_in(self, session, unknown, email: str, password: str = PASSWORD, now: datetime = NOW):  # type: ignore[no-untyped-def]
        return accounts.log_in(session, email, password, now=now, unknown=unknown)

    def test_the_right_password_logs_in_and_clears_the_failure_count(self, db_session, unknown) -> None:
        user = UserFactory(failed_logins=3, lockouts=2)
        assert self.log_in(db_session, unknown, user.email) is user
        assert (user.failed_logins, user.lockouts, user.last_login_at) == (0, 0, NOW)
        assert [e.ref_id for e in events(db_session, "auth.login")] == [str(user.id)]

    def test_the_email_is_normalised_before_lookup(self, db_session, unknown) -> None:
        user = UserFactory(email="jane@example.com")
        assert self.log_in(db_session, unknown, "  Jane@EXAMPLE.com ") is user

    def test_a_wrong_password_is_refused_generically_and_counted(self, db_session, unknown) -> None:
        user = UserFactory()
        with pytest.raises(accounts.LoginFailed) as refused:
            self.log_in(db_session, unknown, user.email, "not the password")
        assert refused.value.message == accounts.WRONG_CREDENTIALS == "Wrong email or password."
        assert user.failed_logins == 1 and user.locked_until is None
        assert [e.ref_id for e in events(db_session, "auth.login_failed")] == [str(user.id)]

    def test_an_unknown_email_gets_the_same_answer_as_a_wrong_password(self, db_session, unknown) -> None:
        with pytest.raises(accounts.LoginFailed) as refused:
            self.log_in(db_session, unknown, "nobody@example.com", "whatever password")
        assert refused.value.message == accounts.WRONG_CREDENTIALS
        assert refused.value.code == "invalid_credentials"

    def test_a_deleted_account_is_treated_as_unknown(self, db_session, unknown) -> None:
        user = UserFactory(deleted_at=NOW - timedelta(days=1))
        with pytest.raises(accounts.LoginFailed):
            self.log_in(db_session, unknown, user.email)

    def test_five_failures_lock_for_15_minutes_even_against_the_right_password(self, db_session, unknown) -> None:
        user = UserFactory()
        for _ in range(4):
            with pytest.raises(accounts.LoginFailed):
                self.log_in(db_session, unknown, user.email, "wrong password")
        with pytest.raises(accounts.AccountLocked) as locked:
            self.log_in(db_session, unknown, user.email, "wrong password")
        assert "locked" in locked.value.message and "15 minutes" in locked.value.message
        assert locked.value.retry_after == 900
        assert user.locked_until == NOW + timedelta(minutes=15) and user.lockouts == 1 and user.failed_logins == 0
        assert len(events(db_session, "auth.lockout")) == 1
        with pytest.raises(accounts.AccountLocked) as still:
            self.log_in(db_session, unknown, user.email, now=NOW + timedelta(minutes=5))
        assert "10 minutes" in still.value.message
        # When the lock has run out the right password works again.
        assert self.log_in(db_session, unknown, user.email, now=NOW + timedelta(minutes=15, seconds=1)) is user
        assert user.locked_until is None and user.lockouts == 0

    def test_each_new_lock_doubles_the_previous_one(self, db_session, unknown) -> None:
        user = UserFactory()
        now = NOW
        for expected_minutes in (15, 30, 60):
            for _ in range(4):
                with pytest.raises(accounts.LoginFailed):
                    self.log_in(db_session, unknown, user.email, "wrong password", now=now)
            with pytest.raises(accounts.AccountLocked) as locked:
                self.log_in(db_session, unknown, user.email, "wrong password", now=now)
            assert user.locked_until == now + timedelta(minutes=expected_minutes)
            assert f"{expected_minutes} minutes" in locked.value.message
            now = user.locked_until + timedelta(seconds=1)

    def test_failures_during_a_lock_are_not_counted(self, db_session, unknown) -> None:
        user = UserFactory(locked_until=NOW + timedelta(minutes=10), lockouts=1)
        with pytest.raises(accounts.AccountLocked):
            self.log_in(db_session, unknown, user.email, "wrong password")
        assert user.failed_logins == 0 and user.lockouts == 1

    def test_an_unknown_email_locks_exactly_like_a_real_account(self, db_session, unknown) -> None:
        answers = []
        for _ in range(5):
            with pytest.raises(Refusal) as refused:
                self.log_in(db_session, unknown, "ghost@example.com", "some password here")
            answers.append(type(refused.value))
        assert answers == [accounts.LoginFailed] * 4 + [accounts.AccountLocked]
        with pytest.raises(accounts.AccountLocked) as locked:
            self.log_in(db_session, unknown, "GHOST@example.com", "x", now=NOW + timedelta(minutes=1))
        assert "14 minutes" in locked.value.message
        # The Redis keys name a hash of the address, never the address.
        assert not any("ghost" in key for key in unknown.client.scan_iter(f"{unknown.prefix}:*"))
        with pytest.raises(accounts.LoginFailed):
            self.log_in(db_session, unknown, "ghost@example.com", "x", now=NOW + timedelta(minutes=16))


class TestLockoutArithmetic:
    def test_lock_lengths_double_and_stop_at_a_day(self) -> None:
        assert [lock_seconds(n) for n in range(4)] == [900, 1800, 3600, 7200]
        assert lock_seconds(7) == lock_seconds(50) == 24 * 3600

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [(1, "1 minute"), (60, "1 minute"), (61, "2 minutes"), (900, "15 minutes"), (7200, "2 hours")],
    )
    def test_waits_are_described_in_words(self, seconds: int, text: str) -> None:
        assert describe_wait(seconds) == text


class TestEmailVerification:
    def token_for(self, user: User, secret: str = SECRET) -> str:
        return accounts.make_verification_token(user, secret_key=secret)

    def test_a_valid_link_verifies_once_and_a_repeat_is_harmless(self, db_session) -> None:
        user = UserFactory(email_verified_at=None)
        token = self.token_for(user)
        accounts.verify_email(db_session, token, secret_key=SECRET, now=NOW)
        accounts.verify_email(db_session, token, secret_key=SECRET, now=NOW + timedelta(hours=1))
        assert user.email_verified_at == NOW
        assert len(events(db_session, "auth.email_verified")) == 1

    def test_a_tampered_or_foreign_token_is_refused(self, db_session) -> None:
        user = UserFactory(email_verified_at=None)
        token = self.token_for(user)
        for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), self.token_for(user, "another-secret")):
            with pytest.raises(accounts.InvalidToken):
                accounts.verify_email(db_session, bad, secret_key=SECRET, now=NOW)
        assert user.email_verified_at is None

    def test_a_link_for_another_account_is_refused_to_whoever_is_logged_in(self, db_session) -> None:
        owner, other = UserFactory(email_verified_at=None), UserFactory(email_verified_at=None)
        with pytest.raises(accounts.WrongAccount):
            accounts.verify_email(
                db_session, self.token_for(owner), secret_key=SECRET, now=NOW, current_user_id=other.id
            )
        assert owner.email_verified_at is None and other.email_verified_at is None

    def test_the_link_dies_when_the_email_changes(self, db_session) -> None:
        user = UserFactory(email_verified_at=None)
        token = self.token_for(user)
        user.email = "changed@example.com"
        db_session.flush()
        with pytest.raises(accounts.InvalidToken):
            accounts.verify_email(db_session, token, secret_key=SECRET, now=NOW)

    def test_the_link_expires_after_48_hours(self, db_session) -> None:
        user = UserFactory(email_verified_at=None)
        with freeze_time(NOW):
            token = self.token_for(user)
        with freeze_time(NOW + timedelta(hours=47)):
            accounts.verify_email(db_session, token, secret_key=SECRET, now=NOW + timedelta(hours=47))
        user.email_verified_at = None
        db_session.flush()
        with freeze_time(NOW + timedelta(hours=48, seconds=2)), pytest.raises(accounts.InvalidToken) as expired:
            accounts.verify_email(db_session, token, secret_key=SECRET, now=NOW + timedelta(hours=49))
        assert "expired" in expired.value.message

    def test_resend_queues_a_fresh_link_only_while_unverified(self, db_session) -> None:
        user = UserFactory(email_verified_at=None)
        assert accounts.resend_verification(db_session, user, app_url=APP_URL, secret_key=SECRET) is True
        assert accounts.resend_verification(db_session, user, app_url=APP_URL, secret_key=SECRET) is True
        assert len(outbox(db_session, "verify_email")) == 2
        user.email_verified_at = NOW
        assert accounts.resend_verification(db_session, user, app_url=APP_URL, secret_key=SECRET) is False
        assert len(outbox(db_session, "verify_email")) == 2


class TestPasswordReset:
    def request(self, session, email: str, now: datetime = NOW) -> str | None:  # type: ignore[no-untyped-def]
        """Ask for a reset; the token from the queued email, if one was queued."""
        before = len(outbox(session, "password_reset"))
        accounts.request_password_reset(session, email, now=now, app_url=APP_URL)
        emails = outbox(session, "password_reset")
        if len(emails) == before:
            return None
        return emails[-1].context["reset_url"].rsplit("/", 1)[1]

    def test_only_the_sha256_of_a_32_byte_token_is_stored_valid_for_an_hour(self, db_session) -> None:
        user = UserFactory()
        token = self.request(db_session, f"  {user.email.upper()} ")
        assert token is not None and len(token) >= 43  # 32 random bytes, base64url
        [row] = db_session.scalars(select(PasswordResetToken)).all()
        assert row.user_id == user.id
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() != token
        assert row.expires_at == NOW + timedelta(hours=1) and row.used_at is None
        assert [e.ref_id for e in events(db_session, "auth.reset_requested")] == [str(user.id)]

    def test_an_unknown_email_stores_and_sends_nothing(self, db_session) -> None:
        assert self.request(db_session, "nobody@example.com") is None
        assert db_session.scalars(select(PasswordResetToken)).all() == []

    def test_at_most_three_reset_emails_per_account_per_hour(self, db_session) -> None:
        user = UserFactory()
        tokens = [self.request(db_session, user.email, NOW + timedelta(minutes=i)) for i in range(4)]
        assert [t is not None for t in tokens] == [True, True, True, False]
        assert self.request(db_session, user.email, NOW + timedelta(minutes=61)) is not None

    def test_a_reset_sets_the_password_ends_sessions_lifts_the_lock_and_uses_every_link(self, db_session) -> None:
        user = UserFactory(email_verified_at=None, locked_until=NOW + timedelta(hours=1), lockouts=3, failed_logins=2)
        first, second = self.request(db_session, user.email), self.request(db_session, user.email)
        version = user.session_version
        assert accounts.reset_password(db_session, second, "a brand new passphrase", now=NOW) is user
        assert accounts.password_matches("a brand new passphrase", user.password_hash)
        assert user.session_version == version + 1
        assert (user.locked_until, user.lockouts, user.failed_logins) == (None, 0, 0)
        assert user.email_verified_at == NOW  # the reset link proved the mailbox
        assert all(row.used_at == NOW for row in db_session.scalars(select(PasswordResetToken)))
        with pytest.raises(accounts.InvalidToken, match="already used"):
            accounts.reset_password(db_session, first, "another new passphrase", now=NOW)
        assert len(events(db_session, "auth.reset_done")) == 1

    def test_a_used_token_cannot_be_used_again(self, db_session) -> None:
        user = UserFactory()
        token = self.request(db_session, user.email)
        accounts.reset_password(db_session, token, "a brand new passphrase", now=NOW)
        with pytest.raises(accounts.InvalidToken, match="already used"):
            accounts.reset_password(db_session, token, "yet another passphrase", now=NOW)
        assert accounts.password_matches("a brand new passphrase", user.password_hash)

    def test_an_expired_token_is_refused(self, db_session) -> None:
        user = UserFactory()
        token = self.request(db_session, user.email)
        with pytest.raises(accounts.InvalidToken, match="expired"):
            accounts.reset_password(db_session, token, "a brand new passphrase", now=NOW + timedelta(hours=1))
        assert accounts.password_matches(PASSWORD, user.password_hash)

    def test_an_unknown_token_is_refused(self, db_session) -> None:
        with pytest.raises(accounts.InvalidToken, match="not valid"):
            accounts.check_reset_token(db_session, "made-up-token", now=NOW)

    def test_a_weak_new_password_is_refused_and_the_link_still_works(self, db_session) -> None:
        user = UserFactory()
        token = self.request(db_session, user.email)
        with pytest.raises(accounts.InvalidInput, match="at least 10"):
            accounts.reset_password(db_session, token, "short", now=NOW)
        assert accounts.check_reset_token(db_session, token, now=NOW).used_at is None
        accounts.reset_password(db_session, token, "a brand new passphrase", now=NOW)
