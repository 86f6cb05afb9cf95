from pathlib import Path

import pytest

from app.config import DEV_SECRET_KEY, ConfigError, Settings


def settings(**env: str) -> Settings:
    return Settings.from_env(env, dotenv=False)


class TestDefaults:
    def test_nothing_configured_means_embedded_engines_and_builtin_providers(self) -> None:
        s = settings()
        assert s.database_url is None and s.redis_url is None
        assert s.uses_builtin_stripe and s.uses_builtin_video and s.uses_dev_mailbox
        assert s.platform_fee_bps == 2000
        assert s.call_duration_seconds == 300
        assert s.payment_capture == "manual"


class TestValidation:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("PLATFORM_FEE_BPS", "twenty"),
            ("PLATFORM_FEE_BPS", "10001"),
            ("CALL_DURATION_SECONDS", "0"),
            ("PAYMENT_CAPTURE", "later"),
            ("APP_ENV", "staging"),
            ("DATABASE_URL", "mysql://root@localhost/chatlink"),
            ("DATABASE_URL", "sqlite:///chatlink.db"),
            ("DATABASE_URL", "postgresql://postgres@localhost"),
            ("REDIS_URL", "localhost:6379"),
            ("WEBRTC_ICE_SERVERS", "stun:example.org"),
            ("WEBRTC_ICE_SERVERS", '[{"url": "stun:example.org"}]'),
            ("APP_URL", "chatlink.example"),
            ("CURRENCY", "dollars"),
        ],
    )
    def test_bad_value_names_the_variable(self, name: str, value: str) -> None:
        with pytest.raises(ConfigError) as raised:
            settings(**{name: value})
        assert str(raised.value).startswith(f"{name}:")

    def test_call_duration_must_stay_below_the_visibility_timeout(self) -> None:
        with pytest.raises(ConfigError, match="CALL_DURATION_SECONDS"):
            settings(CALL_DURATION_SECONDS="3600")

    @pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
    def test_database_url_is_pinned_to_psycopg(self, scheme: str) -> None:
        s = settings(DATABASE_URL=f"{scheme}://u:p@db.internal:5432/chatlink")
        assert s.database_url == "postgresql+psycopg://u:p@db.internal:5432/chatlink"

    def test_ice_servers_are_parsed(self) -> None:
        s = settings(WEBRTC_ICE_SERVERS='[{"urls": "stun:stun.example.org:3478"}]')
        assert s.webrtc_ice_servers == ({"urls": "stun:stun.example.org:3478"},)


class TestObjectStorage:
    def test_local_disk_unless_a_bucket_is_named(self) -> None:
        assert settings().uses_local_storage
        # AWS keys alone (there for other tools, say) change nothing.
        assert settings(AWS_ACCESS_KEY_ID="AKIA", AWS_SECRET_ACCESS_KEY="s").uses_local_storage

    def test_a_bucket_with_its_endpoint_and_keys(self) -> None:
        s = settings(
            S3_BUCKET="chatlink-photos",
            S3_ENDPOINT_URL="https://acct.r2.cloudflarestorage.com",
            S3_REGION="auto",
            AWS_ACCESS_KEY_ID="key",
            AWS_SECRET_ACCESS_KEY="secret",
        )
        assert not s.uses_local_storage
        assert (s.s3_bucket, s.s3_endpoint_url, s.s3_region) == (
            "chatlink-photos",
            "https://acct.r2.cloudflarestorage.com",
            "auto",
        )

    def test_no_keys_leaves_them_to_boto3(self) -> None:
        s = settings(S3_BUCKET="chatlink-photos")
        assert (s.aws_access_key_id, s.aws_secret_access_key, s.s3_region) == (None, None, "us-east-1")

    @pytest.mark.parametrize(
        ("env", "named"),
        [
            ({"S3_BUCKET": "Photos_Bucket"}, "S3_BUCKET"),
            ({"S3_BUCKET": "ok-bucket", "AWS_ACCESS_KEY_ID": "key"}, "AWS_SECRET_ACCESS_KEY"),
            ({"S3_BUCKET": "ok-bucket", "AWS_SECRET_ACCESS_KEY": "secret"}, "AWS_ACCESS_KEY_ID"),
            ({"S3_BUCKET": "ok-bucket", "S3_ENDPOINT_URL": "minio:9000"}, "S3_ENDPOINT_URL"),
        ],
    )
    def test_bad_storage_settings_name_the_variable(self, env: dict[str, str], named: str) -> None:
        with pytest.raises(ConfigError, match=f"^{named}:"):
            settings(**env)


class TestProduction:
    REAL = {
        "APP_ENV": "production",
        "SECRET_KEY": "x" * 40,
        "APP_URL": "https://chatlink.example",
        "DATABASE_URL": "postgresql://u@db/chatlink",
        "REDIS_URL": "redis://cache:6379/0",
        "STRIPE_SECRET_KEY": "sk_live_123",
        "STRIPE_WEBHOOK_SECRET": "whsec_real",
        "DAILY_API_KEY": "daily-key",
        "POSTMARK_SERVER_TOKEN": "pm-token",
        "S3_BUCKET": "chatlink-photos",
        "METRICS_TOKEN": "m" * 32,
    }

    def test_fully_configured_production_starts(self) -> None:
        assert settings(**self.REAL).is_production

    @pytest.mark.parametrize(
        "missing",
        [
            "DATABASE_URL",
            "REDIS_URL",
            "STRIPE_SECRET_KEY",
            "STRIPE_WEBHOOK_SECRET",
            "DAILY_API_KEY",
            "POSTMARK_SERVER_TOKEN",
            "S3_BUCKET",
        ],
    )
    def test_refuses_any_builtin_provider_or_engine(self, missing: str) -> None:
        env = {k: v for k, v in self.REAL.items() if k != missing}
        with pytest.raises(ConfigError, match=f"^{missing}:"):
            settings(**env)

    def test_refuses_the_development_secret_key(self) -> None:
        with pytest.raises(ConfigError, match=r"^SECRET_KEY:"):
            settings(**{**self.REAL, "SECRET_KEY": DEV_SECRET_KEY})

    def test_refuses_to_start_with_public_metrics(self) -> None:
        # Issue 16, finding 8: /metrics is public unless METRICS_TOKEN is set.
        env = {k: v for k, v in self.REAL.items() if k != "METRICS_TOKEN"}
        with pytest.raises(ConfigError, match=r"^METRICS_TOKEN: must be set"):
            settings(**env)

    def test_refuses_a_short_metrics_token(self) -> None:
        with pytest.raises(ConfigError, match=r"^METRICS_TOKEN:"):
            settings(**{**self.REAL, "METRICS_TOKEN": "short"})

    def test_refuses_plain_http(self) -> None:
        with pytest.raises(ConfigError, match=r"^APP_URL:"):
            settings(**{**self.REAL, "APP_URL": "http://chatlink.example"})


def test_env_example_documents_every_setting() -> None:
    """Every variable the code reads appears in .env.example."""
    root = Path(__file__).resolve().parents[2]
    source = (root / "app" / "config.py").read_text()
    documented = (root / ".env.example").read_text()
    import re

    read = set(re.findall(r'reader\.\w+\(\s*"([A-Z_]+)"', source))
    assert read, "found no settings in app/config.py"
    missing = sorted(name for name in read if f"{name}=" not in documented)
    assert missing == []
