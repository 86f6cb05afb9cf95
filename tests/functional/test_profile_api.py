"""GET|POST /api/profile: the JSON shape, validation and CSRF."""

import pytest

from app.models import Profile
from tests.conftest import login
from tests.factories import ProfileFactory, UserFactory
from tests.functional.test_profile_page import page_csrf


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return UserFactory()


@pytest.fixture
def api(client, seller):  # type: ignore[no-untyped-def]
    login(client, seller)
    token = page_csrf(client, "/dashboard")

    def post(body, **headers):  # type: ignore[no-untyped-def]
        return client.post("/api/profile", json=body, headers={"X-CSRFToken": token, **headers})

    return post


class TestGetProfile:
    def test_needs_login(self, client) -> None:
        response = client.get("/api/profile")
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"

    def test_404_before_the_profile_exists(self, client, seller) -> None:
        login(client, seller)
        response = client.get("/api/profile")
        assert response.status_code == 404
        assert "error" in response.get_json()

    def test_camel_case_shape(self, app, client, seller) -> None:
        ProfileFactory(user=seller, slug="jane", display_name="Jane", bio="Hello", price_cents=2500)
        login(client, seller)
        body = client.get("/api/profile").get_json()
        app_url = app.extensions["settings"].app_url
        assert body["displayName"] == "Jane" and body["slug"] == "jane" and body["bio"] == "Hello"
        assert body["priceCents"] == 2500 and body["currency"] == "usd" and body["paused"] is False
        assert body["status"] == "live"
        assert body["paywallUrl"] == f"{app_url}/u/jane"
        assert body["photoUrl"] is None and body["thumbnailUrl"] is None
        assert body["updatedAt"].endswith("Z")


class TestPostProfile:
    def test_creates_with_201_and_a_generated_slug(self, api, seller, db_session) -> None:
        response = api({"displayName": "Zoë Smith", "bio": "Line one\nLine two", "priceCents": 1500})
        assert response.status_code == 201
        body = response.get_json()
        assert (body["slug"], body["priceCents"], body["bio"]) == ("zoe-smith", 1500, "Line one\nLine two")
        assert db_session.query(Profile).filter_by(user_id=seller.id).one().slug == "zoe-smith"

    def test_partial_update_answers_200_and_keeps_the_rest(self, api, seller) -> None:
        api({"displayName": "Jane", "bio": "Hello", "priceCents": 1500})
        response = api({"paused": True})
        assert response.status_code == 200
        body = response.get_json()
        assert (body["bio"], body["priceCents"], body["paused"], body["status"]) == ("Hello", 1500, True, "paused")

    def test_unverified_seller_can_set_up_but_is_not_live(self, client, db_session) -> None:
        user = UserFactory(email_verified_at=None)
        login(client, user)
        token = page_csrf(client, "/dashboard")
        response = client.post("/api/profile", json={"displayName": "New"}, headers={"X-CSRFToken": token})
        assert response.status_code == 201
        assert response.get_json()["status"] == "unverified"

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"displayName": "Jane", "priceCents": 99}, "priceCents"),
            ({"displayName": "Jane", "priceCents": 100001}, "priceCents"),
            ({"displayName": "Jane", "priceCents": "1000"}, "priceCents"),
            ({"displayName": "Jane", "priceCents": True}, "priceCents"),
            ({"displayName": "Jane", "priceCents": 10.5}, "priceCents"),
            ({"displayName": "Jane", "slug": "no"}, "slug"),
            ({"displayName": "Jane", "slug": "bad_slug!"}, "slug"),
            ({"displayName": "Jane", "slug": "admin"}, "slug"),
            ({"displayName": "Jane", "slug": "api"}, "slug"),
            ({"displayName": "x" * 61}, "displayName"),
            ({"displayName": ""}, "displayName"),
            ({"bio": "hello"}, "displayName"),  # a new profile needs a name
            ({"displayName": "Jane", "bio": "x" * 501}, "bio"),
            ({"displayName": "Jane", "paused": "yes"}, "paused"),
        ],
    )
    def test_refusals_name_the_field(self, api, seller, db_session, body: dict, field: str) -> None:
        response = api(body)
        assert response.status_code == 422
        error = response.get_json()["error"]
        assert field in error["fields"]
        assert db_session.query(Profile).filter_by(user_id=seller.id).count() == 0

    def test_taken_slug_is_409(self, api, seller, db_session) -> None:
        ProfileFactory(slug="taken-slug")
        response = api({"displayName": "Jane", "slug": "taken-slug"})
        assert response.status_code == 409
        error = response.get_json()["error"]
        assert error["code"] == "slug_taken" and "slug" in error["fields"]

    def test_not_an_object_is_400(self, api) -> None:
        assert api(["displayName"]).status_code == 400

    def test_missing_csrf_header_is_refused(self, client, seller, db_session) -> None:
        login(client, seller)
        response = client.post("/api/profile", json={"displayName": "Jane"})
        assert response.status_code == 400
        assert "error" in response.get_json()
        assert db_session.query(Profile).filter_by(user_id=seller.id).count() == 0

    def test_anonymous_post_is_refused(self, client) -> None:
        # No session at all: either the CSRF check or the login check refuses it.
        assert client.post("/api/profile", json={"displayName": "Jane"}).status_code in (400, 401)
