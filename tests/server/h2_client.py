#!/usr/bin/python3
# An HTTP/2 client for the server tests (tests/server/h2_test.cpp), on Python's h2 (Debian: python3-h2,
# run with /usr/bin/python3). One scenario per run, against 127.0.0.1:PORT; prints one JSON object
# with what it saw. Every wait is bounded (socket timeouts); it never sends anywhere but 127.0.0.1.
#   h2_client.py PORT SCENARIO
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Client:
    def __init__(self, port, split_preface=False, initial_window=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        if initial_window is not None:  # SETTINGS_INITIAL_WINDOW_SIZE: the server's DATA per stream
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window})
        data = self.conn.data_to_send()
        if split_preface:  # the preface one byte at a time: the server must wait for all of it
            for i in range(len(PREFACE)):
                self.sock.sendall(data[i:i + 1])
                time.sleep(0.002)
            data = data[len(PREFACE):]
        self.sock.sendall(data)
        self.responses = {}
        self.order = []
        self.goaway = None
        self.closed = False

    def request(self, method, path, body=None, headers=()):
        sid = self.conn.get_next_available_stream_id()
        h = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "test")] + list(headers)
        if body is not None:
            h.append(("content-length", str(len(body))))
        self.conn.send_headers(sid, h, end_stream=body is None)
        self.responses[sid] = {"status": 0, "headers": {}, "body": b"", "done": False, "reset": None}
        if body is not None:
            self.pending_bodies = getattr(self, "pending_bodies", {})
            self.pending_bodies[sid] = body
        self.flush()
        return sid

    def flush(self):
        # Request bodies go out as the flow-control windows allow.
        for sid, body in list(getattr(self, "pending_bodies", {}).items()):
            n = min(len(body), self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            while n > 0:
                self.conn.send_data(sid, body[:n])
                body = body[n:]
                n = min(len(body), self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if body:
                self.pending_bodies[sid] = body
            else:
                self.conn.end_stream(sid)
                del self.pending_bodies[sid]
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, until, timeout=10.0):
        end = time.time() + timeout
        while not until() and not self.closed and time.time() < end:
            try:
                self.sock.settimeout(max(0.01, end - time.time()))
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                break
            except ConnectionResetError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.closed = True
                break
            for ev in events:
                if isinstance(ev, h2.events.ResponseReceived):
                    r = self.responses[ev.stream_id]
                    for k, v in ev.headers:
                        k, v = k.decode(), v.decode()
                        if k == ":status":
                            r["status"] = int(v)
                        else:
                            r["headers"][k] = v
                elif isinstance(ev, h2.events.DataReceived):
                    self.responses[ev.stream_id]["body"] += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.responses[ev.stream_id]["done"] = True
                    self.order.append(ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    if ev.stream_id in self.responses:
                        self.responses[ev.stream_id]["reset"] = int(ev.error_code)
                        self.responses[ev.stream_id]["done"] = True
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.goaway = int(ev.error_code)
            try:
                self.flush()
            except (BrokenPipeError, ConnectionResetError, h2.exceptions.ProtocolError):
                self.closed = True

    def all_done(self):
        return all(r["done"] for r in self.responses.values())

    def summary(self):
        out = {}
        for sid, r in self.responses.items():
            out[str(sid)] = {"status": r["status"], "headers": r["headers"], "length": len(r["body"]),
                             "body": r["body"][:64].decode("latin-1"), "done": r["done"], "reset": r["reset"]}
        return {"responses": out, "order": self.order, "goaway": self.goaway, "closed": self.closed}


def pattern(n):
    cycle = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"
    return (cycle * (n // len(cycle) + 1))[:n]


def main():
    port, scenario = int(sys.argv[1]), sys.argv[2]
    result = {}
    if scenario == "routes":  # every route of the load-test target, on one connection
        c = Client(port)
        body = bytes((i * 7) % 251 for i in range(1 << 20))
        c.request("GET", "/plaintext")
        c.request("GET", "/json")
        c.request("HEAD", "/plaintext")
        c.request("POST", "/echo", body[:4096])
        c.request("POST", "/echo", body[:65536])
        c.request("POST", "/echo", body)
        c.request("GET", "/echo?size=262144")
        c.request("GET", "/nowhere")
        c.pump(c.all_done, 20)
        result = c.summary()
        r = c.responses
        result["echo_same"] = [r[7]["body"] == body[:4096], r[9]["body"] == body[:65536], r[11]["body"] == body]
        result["pattern_same"] = r[13]["body"] == pattern(262144)
    elif scenario == "split_preface":
        c = Client(port, split_preface=True)
        c.request("GET", "/plaintext")
        c.pump(c.all_done)
        result = c.summary()
    elif scenario == "delays":  # a slow stream does not hold the others back
        c = Client(port)
        c.request("GET", "/echo?delay=300ms&size=3")
        for _ in range(10):
            c.request("GET", "/plaintext")
        t0 = time.time()
        c.pump(lambda: c.responses[1]["done"] or False, 10)
        result = c.summary()
        result["took"] = time.time() - t0
    elif scenario == "concurrent":  # 128 streams at once, then again, on one connection
        c = Client(port)
        for _ in range(2):
            for i in range(128):
                c.request("GET", "/plaintext" if i % 2 else "/echo?size=1000")
            c.pump(c.all_done, 20)
        result = c.summary()
        result["all_ok"] = all(r["status"] == 200 and r["done"] for r in c.responses.values())
        result["responses"] = {}
    elif scenario in ("settings_flood", "ping_flood"):  # ACKs never read: the server must cut it off
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        frame = (b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" if scenario == "settings_flood"
                 else b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"p" * 8)
        s.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        sent = 0
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            for _ in range(200):
                s.sendall(frame * 100)
                sent += 100
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        got = b""
        try:
            while True:
                d = s.recv(1 << 16)
                if not d:
                    break
                got += d
        except (ConnectionResetError, socket.timeout):
            pass
        # Find the GOAWAY among what came back.
        code, at = None, 0
        while at + 9 <= len(got):
            n = int.from_bytes(got[at:at + 3], "big")
            if got[at + 3] == 7 and at + 17 <= len(got):
                code = int.from_bytes(got[at + 13:at + 17], "big")
            at += 9 + n
        result = {"goaway": code, "sent": sent}
    elif scenario == "zero_window":  # stream windows of 0, never opened: the answers cannot move
        c = Client(port, initial_window=0)
        c.request("GET", "/echo?size=100000")
        c.request("GET", "/plaintext")
        start = time.time()
        c.pump(lambda: c.goaway is not None and c.closed, 10)
        result = c.summary()
        result["seconds"] = round(time.time() - start, 3)
        result["bytes"] = sum(len(r["body"]) for r in c.responses.values())
    elif scenario == "idle":  # answers, then the connection stays open and idle for the test to look at
        c = Client(port)
        for _ in range(4):
            c.request("GET", "/echo?size=100000")
        c.pump(c.all_done)
        result = c.summary()
        result["responses"] = {}
        print(json.dumps(result), flush=True)
        time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 1.0)
        return
    print(json.dumps(result), flush=True)


main()
