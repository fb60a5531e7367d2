"""The embedded services' start-up errors say what to do."""

import os
import socket
import tempfile
from pathlib import Path

import pytest

from giamsat.services import (
    EmbeddedMosquitto,
    EmbeddedPostgres,
    EmbeddedRabbitMQ,
    ServiceError,
    free_port,
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


@pytest.mark.services
@pytest.mark.slow
def test_up_restarts_a_killed_durable_broker_which_kept_what_it_acknowledged(tmp_path):
    """`giamsat up` checks its embedded broker every round and restarts it when it died; the
    restarted RabbitMQ still holds every QoS 1 message it PUBACKed before the kill -9."""
    import pika

    from giamsat.app import Stack
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
