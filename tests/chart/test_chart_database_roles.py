"""Database roles and secrets in the rendered chart (docs/security.md, "Database roles").

The migration Job connects as the schema's owner and is the only pod that gets the owner's
password; the gateway and the ingest CronJob log in as the application's login; only the gateway
gets the token-signing secret and the bootstrap key.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from chartlib import NAMESPACE, PREFIX, Obj, Render, helm_template, pod_templates

TOKEN = ("--set", "models.fetch.hubTokenSecret=hub-token")
GATEWAY_SECRETS = {"VOICEBOT_AUTH_SECRET", "VOICEBOT_BOOTSTRAP_API_KEY"}
HOST = f"{PREFIX}-postgres.{NAMESPACE}.svc:5432"


def _containers(render: Render) -> dict[str, dict[str, Any]]:
    """Every container that runs the voicebot CLI, keyed by its workload's kind/name."""
    found = {}
    for obj in render.objects:
        for _, _, spec in pod_templates(obj):
            for c in spec.get("containers", []):
                if c.get("command", [None])[0] == "voicebot":
                    found[f"{obj['kind']}/{obj['metadata']['name']}"] = c
    return found


def _env(container: dict[str, Any]) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def _secret_keys(container: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (ref["name"], ref["key"])
        for e in container.get("env", [])
        if (ref := e.get("valueFrom", {}).get("secretKeyRef"))
    }


def _objects(*args: str) -> list[Obj]:
    proc = helm_template(*TOKEN, *args)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_in_cluster_postgres_owner_migrates_application_logs_in(renders: dict[str, Render]) -> None:
    containers = _containers(renders["default"])
    pg_secret = f"{PREFIX}-postgres"
    migrate = containers[f"Job/{PREFIX}-migrations"]
    gateway = containers[f"Deployment/{PREFIX}-gateway"]
    ingest = containers[f"CronJob/{PREFIX}-ingest"]

    assert migrate["args"] == ["db", "migrate"]
    m = _env(migrate)
    assert m["VOICEBOT_MIGRATION_DATABASE_URL"]["value"] == (
        f"postgresql://voicebot:$(MIGRATION_DATABASE_PASSWORD)@{HOST}/voicebot"
    )
    assert (
        m["VOICEBOT_DATABASE_URL"]["value"]
        == f"postgresql://voicebot_gateway:$(DATABASE_PASSWORD)@{HOST}/voicebot"
    )
    assert _secret_keys(migrate) == {(pg_secret, "password"), (pg_secret, "app-password")}
    # $(VAR) expands only variables defined before it.
    names = [e["name"] for e in migrate["env"]]
    assert names.index("MIGRATION_DATABASE_PASSWORD") < names.index("VOICEBOT_MIGRATION_DATABASE_URL")
    assert names.index("DATABASE_PASSWORD") < names.index("VOICEBOT_DATABASE_URL")

    for container in (gateway, ingest):
        env = _env(container)
        assert env["VOICEBOT_DATABASE_URL"]["value"] == (
            f"postgresql://voicebot_gateway:$(DATABASE_PASSWORD)@{HOST}/voicebot"
        )
        assert "VOICEBOT_MIGRATION_DATABASE_URL" not in env
        assert "MIGRATION_DATABASE_PASSWORD" not in env
        assert (pg_secret, "password") not in _secret_keys(container)
        assert (pg_secret, "app-password") in _secret_keys(container)


def test_only_the_gateway_gets_the_gateways_secrets(render: Render) -> None:
    """The token-signing secret and the bootstrap key: the gateway signs and accepts them; the
    migration and ingest Jobs need neither (issue 16)."""
    for name, container in _containers(render).items():
        env = set(_env(container))
        if name == f"Deployment/{PREFIX}-gateway":
            assert env >= GATEWAY_SECRETS
        else:
            assert not env & GATEWAY_SECRETS, name
            assert not _secret_keys(container) & {
                (f"{PREFIX}-secrets", k) for k in ("auth_secret", "bootstrap_api_key")
            }


def test_owner_password_reaches_the_migration_job_only(render: Render) -> None:
    """No pod but the migration Job (and Postgres itself) can read the owner's password or URL."""
    pg_secret = f"{PREFIX}-postgres"
    owner_refs = {(pg_secret, "password"), ("voicebot-database", "migration_database_url")}
    for obj in render.objects:
        for _, _, spec in pod_templates(obj):
            for c in [*spec.get("containers", []), *spec.get("initContainers", [])]:
                where = f"{obj['kind']}/{obj['metadata']['name']}"
                if where in (f"Job/{PREFIX}-migrations", f"StatefulSet/{PREFIX}-postgres"):
                    continue
                assert not _secret_keys(c) & owner_refs, where
                assert "VOICEBOT_MIGRATION_DATABASE_URL" not in _env(c), where
                for source in c.get("envFrom", []):
                    assert source.get("secretRef", {}).get("name") not in (pg_secret, "voicebot-database"), (
                        where
                    )


def test_generated_postgres_secret_holds_both_passwords(renders: dict[str, Render]) -> None:
    secret = renders["default"].get("Secret", f"{PREFIX}-postgres")
    owner = base64.b64decode(secret["data"]["password"]).decode()
    app = base64.b64decode(secret["data"]["app-password"]).decode()
    for password in (owner, app):
        assert len(password) >= 32
        assert password.isalnum()  # URL-safe: they are pasted into URLs
    assert owner != app
    pg = renders["default"].get("StatefulSet", f"{PREFIX}-postgres")
    env = {e["name"]: e for e in pg["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POSTGRES_USER"]["value"] == "voicebot"
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{PREFIX}-postgres",
        "key": "password",
    }


def test_external_database_owner_url_only_in_the_migration_job(renders: dict[str, Render]) -> None:
    containers = _containers(renders["production"])
    migrate = _env(containers[f"Job/{PREFIX}-migrations"])
    assert migrate["VOICEBOT_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "voicebot-database",
        "key": "database_url",
    }
    # Optional: a Secret written before the owner got a URL of its own still migrates (with the
    # application's URL, as before).
    assert migrate["VOICEBOT_MIGRATION_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "voicebot-database",
        "key": "migration_database_url",
        "optional": True,
    }
    for name in (f"Deployment/{PREFIX}-gateway", f"CronJob/{PREFIX}-ingest"):
        env = _env(containers[name])
        assert env["VOICEBOT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database_url"
        assert "VOICEBOT_MIGRATION_DATABASE_URL" not in env


def test_names_and_keys_are_values() -> None:
    objects = _objects(
        "--set", "postgres.auth.username=owner", "--set", "postgres.auth.appUsername=svc",
        "--set", "postgres.auth.existingSecret=pg", "--set", "postgres.auth.secretKey=owner-pw",
        "--set", "postgres.auth.appSecretKey=svc-pw",
    )  # fmt: skip
    job = next(o for o in objects if o["kind"] == "Job" and o["metadata"]["name"] == f"{PREFIX}-migrations")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VOICEBOT_MIGRATION_DATABASE_URL"]["value"].startswith("postgresql://owner:")
    assert env["VOICEBOT_DATABASE_URL"]["value"].startswith("postgresql://svc:")
    assert env["MIGRATION_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "pg",
        "key": "owner-pw",
    }
    assert env["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "svc-pw"}
    assert not [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == f"{PREFIX}-postgres"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "postgres.auth.appUsername=voicebot"), "postgres.auth.appUsername: must differ"),
        (("--set", "postgres.auth.appSecretKey=password"), "postgres.auth.appSecretKey: must differ"),
        (("--set", "postgres.auth.appUsername=Not-A-Role"), "appUsername"),
    ],
)
def test_owner_and_application_cannot_be_one(args: tuple[str, ...], message: str) -> None:
    proc = helm_template(*TOKEN, *args)
    assert proc.returncode != 0
    assert message in proc.stderr
