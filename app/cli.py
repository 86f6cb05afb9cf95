"""``flask --app wsgi chatlink ...``: operator commands."""

from __future__ import annotations

import sys
import time

import click
from flask import current_app
from flask.cli import AppGroup

from app.db import db, utcnow
from app.models import Role
from app.services.accounts import create_user, find_user_by_email, generate_password, hash_password
from app.services.demo import seed_demo

chatlink_cli = AppGroup("chatlink", help="ChatLink operator commands.")


@chatlink_cli.command("create-admin")
@click.argument("email")
@click.option("--generate", is_flag=True, help="Generate a password and print it instead of asking.")
def create_admin(email: str, generate: bool) -> None:
    """Create an admin account, or promote an existing account to admin."""
    if generate or not sys.stdin.isatty():
        password = generate_password()
        shown = True
    else:
        password = click.prompt("Password (at least 10 characters)", hide_input=True, confirmation_prompt=True)
        shown = False
    if len(password) < 10:
        raise click.BadParameter("the password must have at least 10 characters")
    with db.session_scope() as session:
        user = find_user_by_email(session, email)
        if user is None:
            user = create_user(session, email, password, role=Role.ADMIN, verified_at=utcnow())
        else:
            user.role = Role.ADMIN
            user.password_hash = hash_password(password)
        address = user.email
    click.echo(f"admin ready: {address}" + (f"  password: {password}" if shown else ""))


@chatlink_cli.command("seed-demo")
def seed_demo_command() -> None:
    """Create the demo seller (paywall at /u/demo) and a demo admin, and print their logins."""
    settings = current_app.extensions["settings"]
    if settings.is_production:
        raise click.ClickException("seed-demo is refused when APP_ENV=production")
    with db.session_scope() as session:
        logins = seed_demo(session, now=utcnow(), currency=settings.currency)
    for login in logins:
        click.echo(f"  {login.role:<7} {login.email}  password: {login.password}")
    click.echo(f"  paywall {settings.app_url}/u/demo")


@chatlink_cli.command("ping-worker")
@click.option("--timeout", default=10.0, help="Seconds to wait for a worker to answer.")
def ping_worker(timeout: float) -> None:
    """Send a task through the broker and wait for a worker to answer it."""
    from tasks.maintenance import ping

    started = time.time()
    answer = ping.delay().get(timeout=timeout)
    click.echo(f"worker {answer['host']} answered in {time.time() - started:.3f} s")
