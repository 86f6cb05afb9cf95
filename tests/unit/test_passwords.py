import pytest

from app.services.passwords import (
    IS_EMAIL,
    MIN_LENGTH,
    TOO_COMMON,
    TOO_LONG,
    TOO_SHORT,
    common_passwords,
    password_problem,
)


class TestPasswordRules:
    @pytest.mark.parametrize("password", ["", "short", "nine char"])
    def test_shorter_than_ten_characters_is_refused_saying_so(self, password: str) -> None:
        assert password_problem(password) == TOO_SHORT
        assert "at least 10 characters" in TOO_SHORT

    def test_exactly_ten_characters_is_enough(self) -> None:
        assert password_problem("kettle-owl") is None

    @pytest.mark.parametrize("password", ["password123", "PASSWORD123", "1234567890", "QwertyUiop", " iloveyou123 "])
    def test_a_common_password_is_refused_whatever_its_case(self, password: str) -> None:
        assert password_problem(password) == TOO_COMMON

    def test_more_than_72_bytes_is_refused_because_bcrypt_would_drop_the_rest(self) -> None:
        assert password_problem("a" * 72) is None
        assert password_problem("a" * 73) == TOO_LONG
        # 37 two-byte characters are 74 bytes: too long although only 37 characters.
        assert password_problem("é" * 37) == TOO_LONG

    def test_the_email_address_or_its_local_part_is_refused(self) -> None:
        assert password_problem("Jane.Doe.Smith@example.com", email="jane.doe.smith@example.com") == IS_EMAIL
        assert password_problem("jane.doe.smith", email="jane.doe.smith@example.com") == IS_EMAIL
        assert password_problem("jane.doe.smith", email="someone@example.com") is None

    def test_a_long_uncommon_passphrase_passes(self) -> None:
        assert password_problem("correct horse battery staple") is None


class TestShippedList:
    def test_the_list_is_loaded_lower_cased_without_comments(self) -> None:
        passwords = common_passwords()
        assert len(passwords) > 150
        assert "password123" in passwords
        assert not any(entry.startswith("#") for entry in passwords)
        assert all(entry == entry.lower() for entry in passwords)

    def test_every_entry_could_pass_the_length_rule(self) -> None:
        # Shorter entries would be dead weight: the length rule refuses them first.
        assert all(len(entry) >= MIN_LENGTH for entry in common_passwords())
