"""The services giamsat runs for itself when none is configured (contract §4) and the broker's
logins: PostgreSQL, Mosquitto and RabbitMQ as child processes on loopback, the ports they got,
and the broker's users and permissions derived from the device registry (Mosquitto password
file and ACL, RabbitMQ definitions). Used by ``giamsat up``, the load test, the tests and the
benchmarks; it imports nothing above it.
"""
