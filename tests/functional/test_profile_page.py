"""The /profile page: creating and editing a profile through the HTML form."""

import re
from html.parser import HTMLParser

import pytest

from app.models import Profile
from tests.conftest import login
from tests.factories import ProfileFactory, UserFactory

_META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_FORM_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def page_csrf(client, path: str = "/profile") -> str:  # type: ignore[no-untyped-def]
    """The CSRF token of the logged-in client's session, read from a page."""
    html = client.get(path).get_data(as_text=True)
    match = _META_CSRF.search(html) or _FORM_CSRF.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse_tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _TagCollector()
    parser.feed(html)
    return parser.tags


def assert_no_inline_code(html: str) -> None:
    """CSP allows only same-origin files: no inline scripts, no style blocks or attributes, no
    event-handler attributes. Parsed as HTML, so escaped text cannot fool it either way."""
    for tag, attrs in parse_tags(html):
        assert tag != "style", "inline <style>"
        assert not (tag == "script" and not attrs.get("src")), "inline <script>"
        assert "style" not in attrs, f"style= on <{tag}>"
        assert not [name for name in attrs if name.startswith("on")], f"event handler on <{tag}>"


def post_profile(client, token: str, **fields):  # type: ignore[no-untyped-def]
    data = {"csrf_token": token, "display_name": "Jane Doe", "slug": "", "bio": "", "price": "10.00", **fields}
    return client.post("/profile", data=data)


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return UserFactory()


class TestProfilePage:
    def test_needs_login(self, client) -> None:
        response = client.get("/profile")
        assert response.status_code in (302, 401)
        if response.status_code == 302:
            assert "/login" in response.headers["Location"]

    def test_new_seller_sees_an_empty_form_with_the_default_price(self, client, seller) -> None:
        login(client, seller)
        response = client.get("/profile")
        html = response.get_data(as_text=True)
        assert response.status_code == 200
        assert 'value="10.00"' in html
        for field_id in ("display_name", "slug", "bio", "price", "paused"):
            assert f'for="{field_id}"' in html and f'id="{field_id}"' in html  # every field is labelled
        assert "Save your details first" in html
        assert response.headers["Cache-Control"] == "no-store"
        assert_no_inline_code(html)

    def test_saving_creates_the_profile_with_a_generated_slug(self, client, seller, db_session) -> None:
        login(client, seller)
        response = post_profile(
            client, page_csrf(client), display_name="José Núñez", bio="Hi\nthere", price="25.50", paused="y"
        )
        assert response.status_code == 303
        assert response.headers["Location"].endswith("/profile")
        profile = db_session.query(Profile).filter_by(user_id=seller.id).one()
        assert (profile.slug, profile.display_name, profile.bio, profile.price_cents, profile.paused) == (
            "jose-nunez",
            "José Núñez",
            "Hi\nthere",
            2550,
            True,
        )
        follow = client.get("/profile").get_data(as_text=True)
        assert "Profile saved." in follow and 'value="jose-nunez"' in follow

    def test_editing_keeps_the_slug_when_left_as_is(self, client, seller, db_session) -> None:
        ProfileFactory(user=seller, slug="jane-calls", display_name="Jane")
        login(client, seller)
        response = post_profile(client, page_csrf(client), slug="jane-calls", display_name="Jane D", price="12")
        assert response.status_code == 303
        db_session.expire_all()
        assert (seller.profile.slug, seller.profile.display_name, seller.profile.price_cents) == (
            "jane-calls",
            "Jane D",
            1200,
        )

    @pytest.mark.parametrize(
        ("slug", "message"),
        [("ab", "3 to 40"), ("Has Space", "lower-case letters"), ("admin", "reserved"), ("dashboard", "reserved")],
    )
    def test_bad_or_reserved_slug_is_refused(self, client, seller, db_session, slug: str, message: str) -> None:
        login(client, seller)
        response = post_profile(client, page_csrf(client), slug=slug)
        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert message in html
        assert 'aria-invalid="true"' in html
        assert db_session.query(Profile).filter_by(user_id=seller.id).count() == 0

    def test_taken_slug_is_refused(self, client, seller, db_session) -> None:
        ProfileFactory(slug="taken-slug")
        login(client, seller)
        response = post_profile(client, page_csrf(client), slug="taken-slug")
        assert response.status_code == 409
        assert "already taken" in response.get_data(as_text=True)
        assert db_session.query(Profile).filter_by(user_id=seller.id).count() == 0

    @pytest.mark.parametrize("price", ["0.99", "1000.01", "0", "-5", "abc", ""])
    def test_price_out_of_range_is_refused(self, client, seller, db_session, price: str) -> None:
        login(client, seller)
        response = post_profile(client, page_csrf(client), price=price)
        assert response.status_code == 422
        assert db_session.query(Profile).filter_by(user_id=seller.id).count() == 0

    def test_name_and_bio_limits(self, client, seller, db_session) -> None:
        login(client, seller)
        token = page_csrf(client)
        assert post_profile(client, token, display_name="x" * 61).status_code == 422
        assert post_profile(client, token, display_name="   ").status_code == 422
        assert post_profile(client, token, bio="x" * 501).status_code == 422
        assert db_session.query(Profile).filter_by(user_id=seller.id).count() == 0

    def test_missing_csrf_token_is_refused(self, client, seller, db_session) -> None:
        login(client, seller)
        response = client.post("/profile", data={"display_name": "Jane", "price": "10"})
        assert response.status_code == 400
        assert db_session.query(Profile).filter_by(user_id=seller.id).count() == 0

    def test_pause_switch_from_the_dashboard(self, client, seller, db_session) -> None:
        ProfileFactory(user=seller)
        login(client, seller)
        token = page_csrf(client, "/dashboard")
        assert client.post("/profile/pause", data={"csrf_token": token, "paused": "1"}).status_code == 303
        db_session.expire_all()
        assert seller.profile.paused is True
        client.post("/profile/pause", data={"csrf_token": token, "paused": "0"})
        db_session.expire_all()
        assert seller.profile.paused is False
        assert client.post("/profile/pause", data={"csrf_token": token, "paused": "maybe"}).status_code == 400
