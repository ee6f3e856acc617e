"""A TCP relay (stdlib only): one listening socket, each connection piped to a target.

The docker backend needs two of them so that Letta in a container reaches the fake LLM
that listens on the host's 127.0.0.1: one on the host (Docker bridge address -> host
loopback) and one inside each Letta container (container loopback -> host), started with
``python -c <this module's source> LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT``.
Tests then pass the same ``http://127.0.0.1:<port>/v1`` URL to every backend.
"""

import socket
import sys
import threading


def _pipe(source, sink):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class TcpRelay:
    def __init__(self, listen_host, listen_port, target_host, target_port):
        self.target = (target_host, int(target_port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((listen_host, int(listen_port)))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def _serve(self, client):
        try:
            upstream = socket.create_connection(self.target, timeout=30)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def serve_forever(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:  # closed by stop()
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def start(self):
        threading.Thread(target=self.serve_forever, name=f"tcp-relay-{self.port}", daemon=True).start()
        return self

    def stop(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


if __name__ == "__main__":
    TcpRelay(*sys.argv[1:5]).serve_forever()
