"""The embedded services' start-up errors say what to do."""

import os
import socket
import tempfile
from pathlib import Path

import pytest

from giamsat.services import EmbeddedMosquitto, EmbeddedPostgres, ServiceError, free_port


def test_a_taken_port_names_the_setting_to_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServiceError, match="GIAMSAT_EMBEDDED_MQTT_PORT.*GIAMSAT_MQTT_URL"):
            EmbeddedMosquitto(tmp_path / "mq", port).start()
        with pytest.raises(ServiceError, match="GIAMSAT_EMBEDDED_PG_PORT.*GIAMSAT_DATABASE_URL"):
            EmbeddedPostgres(tmp_path / "pg", port).start()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another account")
def test_as_root_an_unreachable_data_dir_is_a_clear_error():
    private = Path(tempfile.mkdtemp(prefix="giamsat-private-"))  # 0700, like /root
    try:
        with pytest.raises(ServiceError, match="GIAMSAT_DATA_DIR"):
            EmbeddedPostgres(private / "state" / "postgres", free_port()).start()
    finally:
        import shutil

        shutil.rmtree(private)
