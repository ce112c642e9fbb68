"""docs/registry.md's backup and restore of a scaled-out registry, run as written.

A registry on PostgreSQL and Ceph RGW holds two tagged images. The "Backup" block
of the docs (``pg_dump`` and ``aws s3 sync``) runs; then the database is dropped and the
bucket emptied, as after losing both; the "Restore" block (``createdb``, ``pg_restore``,
``aws s3 sync`` back, ``registry migrate``) runs, and a new ``registry serve`` answers every
tag, manifest and blob with the bytes pushed before. A blob pushed between the dump and the
bucket copy (the backup block runs in two parts around it) is what ``registry gc --dry-run``
reports afterwards, as the docs say.

Blobs no manifest refers to are garbage, so the one pushed late is the only one reported.
The cluster is a PostgreSQL of this test's own (the blocks create and drop the database
named ``registry``), the bucket a fresh one on the session's RGW. The tools are Debian's:
``/usr/bin/aws`` (awscli) and PostgreSQL's client programs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from psycopg import sql

from registry.testing.deadline import time_limit
from registry.testing.engines import REGION, RgwEngine
from registry.testing.pgengine import PG_BIN, PostgresEngine, start_postgres, stop_postgres
from tests.peers import require
from tests.registry.server import REPO_ROOT, Api, RegistryServer, sha256
from tests.test_docs import Block, all_blocks

TIMEOUT = 300
DOC = REPO_ROOT / "docs" / "registry.md"
AWS = "/usr/bin/aws"


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a case that runs longer than TIMEOUT seconds instead of hanging the session."""
    with time_limit(TIMEOUT):
        yield


@pytest.fixture()
def own_postgres(tmp_path: Path) -> Iterator[PostgresEngine]:
    """A PostgreSQL cluster for this test alone, with the ``registry`` role and database."""
    require(str(PG_BIN / "initdb"))
    engine = start_postgres(tmp_path / "pg")
    try:
        yield engine
    finally:
        stop_postgres(engine)


def doc_block(needle: str) -> Block:
    """The ``sh`` block of docs/registry.md that contains ``needle``."""
    found = [b for b in all_blocks() if b.doc == DOC and b.lang == "sh" and needle in b.text]
    assert len(found) == 1, f"docs/registry.md: {len(found)} sh blocks contain {needle!r}"
    return found[0]


def run_script(text: str, where: str, env: dict[str, str], cwd: Path) -> None:
    """Run docs lines with bash as the docs' reader would, failing with their output."""
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (
        f"{where} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def s3_client(rgw: RgwEngine) -> object:
    """A boto3 client of the RGW."""
    return boto3.session.Session(
        aws_access_key_id=rgw.access_key, aws_secret_access_key=rgw.secret_key,
    ).client("s3", endpoint_url=rgw.endpoint, region_name=REGION)


def shell_env(pg: PostgresEngine, rgw: RgwEngine, bucket: str) -> dict[str, str]:
    """The environment of an operator holding the registry's settings: ``REGISTRY_*``, the
    AWS credentials, and the PostgreSQL superuser's connection for ``createdb``."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}:{PG_BIN}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(REPO_ROOT),
        **rgw.settings(),
        "REGISTRY_S3_BUCKET": bucket,
        "REGISTRY_METADATA_URL": pg.url,
        "AWS_DEFAULT_REGION": REGION,
        "PGHOST": pg.host,
        "PGPORT": str(pg.port),
        "PGUSER": "postgres",
        "PGPASSWORD": pg.superuser_password,
    }


def lose_everything(pg: PostgresEngine, rgw: RgwEngine, bucket: str) -> None:
    """Drop the registry's database and empty its bucket."""
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
            sql.Identifier(pg.database)))
    client: Any = s3_client(rgw)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", ()):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def gc_dry_run(env: dict[str, str], root: Path) -> str:
    """What ``registry gc --dry-run --grace 0`` prints for the registry of ``env``."""
    done = subprocess.run([sys.executable, "-m", "registry.cli", "gc", "--dry-run",
                           "--grace", "0", "--root", str(root)],
                          env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_backup_and_restore_as_documented(own_postgres: PostgresEngine, rgw: RgwEngine,
                                          tmp_path: Path) -> None:
    require(AWS)
    require(str(PG_BIN / "pg_dump"))
    bucket = f"backup-{uuid.uuid4().hex[:10]}"
    client: Any = s3_client(rgw)
    client.create_bucket(Bucket=bucket)
    env = shell_env(own_postgres, rgw, bucket)
    server_env = {k: v for k, v in env.items() if k.startswith(("REGISTRY_", "AWS_"))}

    server = RegistryServer(tmp_path / "root-a", env=server_env).start()
    try:
        with server.client() as http:
            api = Api(http)
            manifests = {("team/app", "v1"): api.image("team/app", "v1", layers=2),
                         ("team/tools", "stable"): api.image("team/tools", "stable")}

            backup = doc_block("pg_dump")
            lines = backup.text.splitlines(keepends=True)
            split = next(i for i, line in enumerate(lines) if line.startswith("aws "))
            workdir = tmp_path / "operator"
            workdir.mkdir()
            run_script("".join(lines[:split]) + 'echo "$backup" > backup-dir\n',
                       backup.where, env, workdir)
            late = api.blob("team/app", b"pushed after the dump")
            saved = (workdir / (workdir / "backup-dir").read_text().strip()).resolve()
            run_script("".join(lines[split:]), backup.where, {**env, "backup": str(saved)},
                       workdir)
    finally:
        server.stop()
    assert (saved / "registry.pgdump").stat().st_size > 0

    lose_everything(own_postgres, rgw, bucket)
    restore = doc_block("pg_restore")
    run_script(restore.text, restore.where, {**env, "backup": str(saved)}, workdir)

    restored = RegistryServer(tmp_path / "root-b", env=server_env).start()
    try:
        with restored.client() as http:
            for (repo, tag), pushed in manifests.items():
                r = http.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": pushed.media_type})
                assert r.status_code == 200, (repo, tag, r.text)
                assert r.content == pushed.body
                assert r.headers["docker-content-digest"] == pushed.digest
                doc = json.loads(pushed.body)
                for blob in [doc["config"], *doc["layers"]]:
                    r = http.get(f"/v2/{repo}/blobs/{blob['digest']}")
                    assert r.status_code == 200 and sha256(r.content) == blob["digest"]
            assert http.get("/v2/team/app/tags/list").json()["tags"] == ["v1"]
            assert http.head(f"/v2/team/app/blobs/{late}").status_code == 404
    finally:
        restored.stop()
    report = gc_dry_run(server_env, tmp_path / "root-b")
    assert f"blobs: would delete 1 ({len(b'pushed after the dump')} bytes)" in report, report
