import pytest

from app.db import utcnow
from app.models import Profile
from app.refusals import Conflict, Refusal
from app.services.profiles import (
    PRICE_DEFAULT_CENTS,
    ProfileChanges,
    generate_slug,
    save_profile,
    seller_unavailable_reason,
    set_paused,
    slug_problem,
    slugify,
)
from tests.factories import ProfileFactory, UserFactory


def save(session, user, currency="usd", **changes):  # type: ignore[no-untyped-def]
    return save_profile(session, user_id=user.id, changes=ProfileChanges(**changes), currency=currency)


class TestSlugRules:
    @pytest.mark.parametrize(
        "slug",
        ["ab", "a" * 41, "has space", "UPPER!", "under_score", "émile", "-leading", "trailing-", "dot.ted", ""],
    )
    def test_bad_slugs_are_refused(self, slug: str) -> None:
        assert slug_problem(slug) is not None

    @pytest.mark.parametrize("slug", ["admin", "api", "dashboard", "login", "u", "verify-email", "chatlink"])
    def test_reserved_words_are_refused(self, slug: str) -> None:
        problem = slug_problem(slug) if len(slug) >= 3 else "too short"
        assert problem is not None

    def test_reserved_message_says_reserved(self) -> None:
        assert "reserved" in (slug_problem("admin") or "")

    @pytest.mark.parametrize("slug", ["abc", "jane-doe", "a1-b2-c3", "x" * 40, "admin-jane"])
    def test_good_slugs_pass(self, slug: str) -> None:
        assert slug_problem(slug) is None


class TestSlugify:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("José Núñez", "jose-nunez"),
            ("  Ada   Lovelace ", "ada-lovelace"),
            ("Zoë 😀 Smith", "zoe-smith"),
            ("😀🎉", ""),
            ("Straße Øre", "strasse-ore"),
            ("Иван Петров", "ivan-petrov"),
            ("O'Brien & Co.", "o-brien-co"),
        ],
    )
    def test_transliterates_and_drops_symbols(self, name: str, expected: str) -> None:
        assert slugify(name) == expected

    def test_long_names_leave_room_for_a_suffix(self) -> None:
        assert len(slugify("a" * 80)) <= 36


class TestGenerateSlug:
    def test_free_stem_is_used_as_is(self, db_session) -> None:
        assert generate_slug(db_session, "José Núñez") == "jose-nunez"

    def test_collisions_get_the_next_number(self, db_session) -> None:
        ProfileFactory(slug="jose-nunez")
        ProfileFactory(slug="jose-nunez-2")
        ProfileFactory(slug="jose-nunez-extra")  # shares the prefix but is not a numbered twin
        assert generate_slug(db_session, "José Núñez") == "jose-nunez-3"

    def test_emoji_only_name_falls_back_to_a_valid_slug(self, db_session) -> None:
        slug = generate_slug(db_session, "😀🎉")
        assert slug_problem(slug) is None
        assert slug.startswith("seller-")

    def test_reserved_stem_is_suffixed(self, db_session) -> None:
        assert generate_slug(db_session, "Admin") == "admin-2"

    def test_too_short_stem_is_suffixed(self, db_session) -> None:
        assert generate_slug(db_session, "Al") == "al-2"


class TestSaveProfile:
    def test_creates_with_generated_slug_and_defaults(self, db_session) -> None:
        user = UserFactory()
        profile = save(db_session, user, display_name="  Zoë   Smith ")
        assert profile.display_name == "Zoë Smith"
        assert profile.slug == "zoe-smith"
        assert profile.price_cents == PRICE_DEFAULT_CENTS
        assert profile.currency == "usd"
        assert db_session.get(Profile, profile.id) is not None

    def test_generated_slug_avoids_an_existing_one(self, db_session) -> None:
        ProfileFactory(slug="zoe-smith")
        profile = save(db_session, UserFactory(), display_name="Zoe Smith")
        assert profile.slug == "zoe-smith-2"

    def test_new_profile_needs_a_name(self, db_session) -> None:
        with pytest.raises(Refusal) as caught:
            save(db_session, UserFactory(), bio="hi")
        assert "display_name" in caught.value.fields

    @pytest.mark.parametrize("name", ["", "   ", "x" * 61, "bad\u0000name", "rtl\u202etrick"])
    def test_bad_display_names_are_refused(self, db_session, name: str) -> None:
        with pytest.raises(Refusal) as caught:
            save(db_session, UserFactory(), display_name=name)
        assert "display_name" in caught.value.fields

    def test_sixty_character_name_is_fine(self, db_session) -> None:
        assert save(db_session, UserFactory(), display_name="x" * 60).display_name == "x" * 60

    @pytest.mark.parametrize("price", [0, 99, 100001, -5])
    def test_price_out_of_range_is_refused(self, db_session, price: int) -> None:
        with pytest.raises(Refusal) as caught:
            save(db_session, UserFactory(), display_name="Jane", price_cents=price)
        assert "price_cents" in caught.value.fields

    @pytest.mark.parametrize("price", [100, 100000])
    def test_price_bounds_are_inclusive(self, db_session, price: int) -> None:
        assert save(db_session, UserFactory(), display_name="Jane", price_cents=price).price_cents == price

    def test_bio_over_500_is_refused_and_500_is_fine(self, db_session) -> None:
        user = UserFactory()
        with pytest.raises(Refusal) as caught:
            save(db_session, user, display_name="Jane", bio="x" * 501)
        assert "bio" in caught.value.fields
        assert len(save(db_session, user, display_name="Jane", bio="x" * 500).bio) == 500

    def test_bio_keeps_line_breaks_and_normalises_them(self, db_session) -> None:
        profile = save(db_session, UserFactory(), display_name="Jane", bio="one  \r\ntwo\rthree\n")
        assert profile.bio == "one\ntwo\nthree"

    def test_chosen_slug_is_lowercased_and_checked(self, db_session) -> None:
        assert save(db_session, UserFactory(), display_name="Jane", slug=" Jane-Calls ").slug == "jane-calls"

    def test_bad_and_reserved_slugs_are_refused(self, db_session) -> None:
        user = UserFactory()
        for slug in ("no", "has space", "admin", "api", "dashboard"):
            with pytest.raises(Refusal) as caught:
                save(db_session, user, display_name="Jane", slug=slug)
            assert "slug" in caught.value.fields
            assert not isinstance(caught.value, Conflict)

    def test_taken_slug_is_a_conflict(self, db_session) -> None:
        ProfileFactory(slug="taken-name")
        with pytest.raises(Refusal) as caught:
            save(db_session, UserFactory(), display_name="Jane", slug="taken-name")
        assert isinstance(caught.value, Conflict)
        assert "taken" in caught.value.fields["slug"]

    def test_every_refused_field_is_reported_at_once(self, db_session) -> None:
        ProfileFactory(slug="taken-name")
        with pytest.raises(Refusal) as caught:
            save(db_session, UserFactory(), display_name="", slug="taken-name", price_cents=5, bio="x" * 600)
        assert set(caught.value.fields) == {"display_name", "slug", "price_cents", "bio"}
        assert not isinstance(caught.value, Conflict)

    def test_update_keeps_the_slug_and_unsent_fields(self, db_session) -> None:
        user = UserFactory()
        save(db_session, user, display_name="Jane", bio="Hello", price_cents=2500)
        profile = save(db_session, user, display_name="Jane Doe")
        assert (profile.slug, profile.bio, profile.price_cents) == ("jane", "Hello", 2500)
        assert profile.display_name == "Jane Doe"

    def test_keeping_your_own_slug_is_not_taken(self, db_session) -> None:
        user = UserFactory()
        save(db_session, user, display_name="Jane", slug="jane-calls")
        assert save(db_session, user, display_name="Jane", slug="jane-calls").slug == "jane-calls"

    def test_changing_slug(self, db_session) -> None:
        user = UserFactory()
        save(db_session, user, display_name="Jane")
        assert save(db_session, user, slug="jane-new").slug == "jane-new"

    def test_pause_switch(self, db_session) -> None:
        user = UserFactory()
        assert save(db_session, user, display_name="Jane", paused=True).paused is True
        assert set_paused(db_session, user_id=user.id, paused=False) is True
        db_session.expire_all()
        assert db_session.get(Profile, user.profile.id).paused is False

    def test_pause_without_profile_changes_nothing(self, db_session) -> None:
        assert set_paused(db_session, user_id=UserFactory().id, paused=True) is False


class TestSellerUnavailableReason:
    def test_live(self, db_session) -> None:
        profile = ProfileFactory()
        assert seller_unavailable_reason(profile.user, profile) is None

    @pytest.mark.parametrize(
        ("user_changes", "paused", "reason"),
        [
            ({"email_verified_at": None}, False, "unverified"),
            ({}, True, "paused"),
            ({"suspended_at": "now"}, False, "suspended"),
            ({"deleted_at": "now"}, False, "deleted"),
            # The most permanent reason wins.
            ({"suspended_at": "now", "email_verified_at": None}, True, "suspended"),
            ({"deleted_at": "now", "suspended_at": "now"}, True, "deleted"),
        ],
    )
    def test_reasons(self, db_session, user_changes: dict, paused: bool, reason: str) -> None:
        values = {k: (utcnow() if v == "now" else v) for k, v in user_changes.items()}
        profile = ProfileFactory(user=UserFactory(**values), paused=paused)
        assert seller_unavailable_reason(profile.user, profile) == reason

    def test_no_profile_counts_as_deleted(self, db_session) -> None:
        assert seller_unavailable_reason(UserFactory(), None) == "deleted"


class TestSlugRaces:
    """Another seller can claim a slug between our check and our insert; the unique constraint
    catches it. The race is reproduced by making the check read stale data."""

    def test_generated_slug_taken_meanwhile_gets_a_random_suffix(self, db_session, monkeypatch) -> None:
        ProfileFactory(slug="jane")
        monkeypatch.setattr("app.services.profiles.generate_slug", lambda session, name, **kw: "jane")
        profile = save(db_session, UserFactory(), display_name="Jane")
        assert profile.slug.startswith("jane-") and slug_problem(profile.slug) is None
        assert db_session.get(Profile, profile.id).slug == profile.slug

    def test_chosen_slug_taken_meanwhile_is_a_conflict(self, db_session, monkeypatch) -> None:
        ProfileFactory(slug="jane-calls")
        monkeypatch.setattr("app.services.profiles._slug_taken", lambda session, slug: False)
        user = UserFactory()
        with pytest.raises(Refusal) as caught:
            save(db_session, user, display_name="Jane", slug="jane-calls")
        assert isinstance(caught.value, Conflict)
        # The failed insert was rolled back to its savepoint; the session is still usable.
        assert save(db_session, user, display_name="Jane", slug="jane-other").slug == "jane-other"
