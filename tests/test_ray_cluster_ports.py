"""The private test cluster never gives two of a node's components one port: `ray start` refuses a
node whose GCS and metrics exporter were handed the same number (the OS may hand a port that was
just free out again)."""

import socket

from tests import ray_cluster
from tests.ray_cluster import free_port


def test_free_port_never_repeats_a_port_it_handed_out(monkeypatch):
    # an OS that hands out the same free port twice before moving on
    offered = iter([40001, 40001, 40001, 40002])

    class FakeSocket:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, addr):
            self.port = next(offered)

        def getsockname(self):
            return ("0.0.0.0", self.port)

    monkeypatch.setattr(ray_cluster, "_GIVEN", set())
    monkeypatch.setattr(socket, "socket", FakeSocket)
    assert [free_port(), free_port()] == [40001, 40002]


def test_free_ports_of_one_node_are_distinct():
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
