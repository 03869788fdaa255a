#!/usr/bin/python3
# A scripted HTTP/2 (h2c) server for the load generator's tests (tests/loadgen/h2_test.cpp), on
# Python's h2 (Debian: python3-h2, run with /usr/bin/python3). It listens on 127.0.0.1 only, prints
# "PORT n" once listening, serves until killed (or 60 s), and misbehaves as the mode says:
#   reset   answers streams 1, 5, 9, ... (id // 2 even) with 200 "ok"; resets the others (INTERNAL_ERROR)
#   goaway  answers streams up to 9 on each connection; at the first stream above 9 it sends GOAWAY
#           (NO_ERROR, last stream 9) and closes the connection (after reading what is left)
#   h2peer.py MODE
import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions


def linger_close(sock):
    # Our side is done: say so, then read what the client still sends for up to a second, so that a
    # close with unread input (a reset) cannot destroy the GOAWAY before the client reads it.
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(1)
        end = time.monotonic() + 1
        while time.monotonic() < end and sock.recv(65536):
            pass
    except OSError:
        pass
    sock.close()


def serve(sock, mode):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    sock.settimeout(10)
    try:
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if not isinstance(ev, h2.events.RequestReceived):
                    continue
                sid = ev.stream_id
                if mode == "goaway" and sid > 9:
                    conn.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=9)
                    sock.sendall(conn.data_to_send())
                    linger_close(sock)
                    return
                if mode == "reset" and (sid // 2) % 2 == 1:
                    conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
                    continue
                conn.send_headers(sid, [(":status", "200"), ("content-length", "2")])
                conn.send_data(sid, b"ok", end_stream=True)
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
    except (OSError, h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
        pass
    sock.close()


def main():
    mode = sys.argv[1]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.5)
    print("PORT", listener.getsockname()[1], flush=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            sock, _ = listener.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(sock, mode), daemon=True).start()


main()
