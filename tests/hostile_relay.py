"""A hostile relay for flytube's tests (tests/hostile.rs), built on paramiko.

Run by the system python (/usr/bin/python3 with Debian's python3-paramiko 2.12). It accepts
flytube's public key, grants its tcpip-forward request, then does what the test asks on
stdin, one command a line, each answered by one line on stdout, "ok ..." or "error ...":

  flood COUNT SIZE TYPE...   COUNT rounds of one message of each TYPE (a number), carrying
                             SIZE zero bytes, none of them asked for
  echo TEXT                  open a forwarded-tcpip channel to flytube, send TEXT, answer
                             with what came back (flytube's target is an echo server)
  bulk N                     the same with N random bytes, compared here
  keepalive                  a keepalive@openssh.com global request with want_reply
  rekey                      a key re-exchange started by the relay
  rekey-mac MAC              a key re-exchange started by the relay offering only MAC:
                             answers "ok rekeyed", or "ok failed" and the reason
  rekey-cipher CIPHER        the same, offering only CIPHER
  stall SECONDS              stop reading for SECONDS at the next SSH_MSG_UNIMPLEMENTED
  hold N                     open a forwarded-tcpip channel and send N bytes on it from a
                             thread; answer once flytube stopped taking them (its target
                             does not read), with the channel's window closed for 1 s
  empty COUNT                COUNT SSH_MSG_CHANNEL_DATA with no data on the held channel
  unimplemented              the SSH_MSG_UNIMPLEMENTED replies so far, counted by the type
                             of the message each one names by its sequence number
  coalesced N                N round trips on one channel to flytube's echo target, each
                             an SSH_MSG_IGNORE and the data packet written to the socket
                             together: "ok MEDIAN_MS MAX_MS" of the round trips
  padding                    the random padding of flytube's packets since the keys were
                             set (encrypt-then-MAC only): "ok PACKETS DISTINCT ZEROED",
                             how many packets, how many different paddings, and how many
                             paddings were all zero bytes

usage: hostile_relay.py HOST_KEY CLIENT_PUB LOG [RCVBUF]
It prints "port N" and "fingerprint SHA256:..." (of HOST_KEY, computed here), then
"forward ADDRESS PORT" once flytube asked for its forward. RCVBUF sets SO_RCVBUF on the
relay's socket (a small one makes a relay that stops reading block flytube soon).
Set FLYTUBE_TEST_RELAY_DEBUG=1 for paramiko's debug log in LOG.
"""

import base64
import hashlib
import logging
import os
import socket
import sys
import threading
import time

import paramiko
from paramiko.message import Message

host_key_path, client_pub_path, log_path = sys.argv[1:4]
rcvbuf = int(sys.argv[4]) if len(sys.argv) > 4 else 0
logging.basicConfig(filename=log_path, level=logging.INFO)
# Only paramiko's errors, unless asked for everything.
debug = bool(os.environ.get("FLYTUBE_TEST_RELAY_DEBUG"))
logging.getLogger("paramiko").setLevel(logging.DEBUG if debug else logging.ERROR)

host_key = paramiko.Ed25519Key(filename=host_key_path)
client_b64 = open(client_pub_path).read().split()[1]


def say(*words):
    print(*words, flush=True)


class Server(paramiko.ServerInterface):
    def __init__(self):
        self.forward = None
        self.forwarded = threading.Event()

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        if key.get_base64() == client_b64:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_port_forward_request(self, address, port):
        self.forward = (address, port)
        self.forwarded.set()
        return port

    def check_channel_request(self, kind, chanid):
        # flytube's liveness probe opens a "session" channel: a refusal is an answer too.
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if rcvbuf:
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
listener.bind(("127.0.0.1", 0))
listener.listen(1)
fingerprint = base64.b64encode(hashlib.sha256(host_key.asbytes()).digest()).decode()
say("port", listener.getsockname()[1])
say("fingerprint", "SHA256:" + fingerprint.rstrip("="))

conn, _ = listener.accept()
transport = paramiko.Transport(conn)
transport.add_server_key(host_key)

# The type of every message sent, by sequence number, to check the sequence number in each
# SSH_MSG_UNIMPLEMENTED (RFC 4253 section 11.4). The packetizer's write lock is re-entrant.
sent_types = {}
packetizer = transport.packetizer
send_message = packetizer.send_message


def send_and_record(data):
    with packetizer._Packetizer__write_lock:
        # Recorded first: the reply may be read before send_message returns.
        sent_types[packetizer._Packetizer__sequence_number_out] = data.asbytes()[0]
        send_message(data)


packetizer.send_message = send_and_record
answered = {}
stall = [0.0]


def on_unimplemented(transport, m):
    kind = sent_types.get(m.get_int(), "unknown")
    answered[kind] = answered.get(kind, 0) + 1
    if stall[0]:
        # Stop reading for a while: flytube's replies fill the socket buffers.
        time.sleep(stall[0])
        stall[0] = 0.0


# The padding of every packet flytube sends, decrypted. With encrypt-then-MAC the packetizer
# hands the cipher each packet's body whole (padding length byte, payload, padding), so a
# wrapper around the inbound cipher sees one packet per call.
paddings = []
set_inbound_cipher = packetizer.set_inbound_cipher


class PaddingRecorder:
    def __init__(self, engine):
        self.engine = engine

    def update(self, data):
        plain = self.engine.update(data)
        paddings.append(bytes(plain[len(plain) - plain[0]:]))
        return plain


def set_inbound_cipher_recording(block_engine, *args, etm=False, **kwargs):
    if etm:
        block_engine = PaddingRecorder(block_engine)
    set_inbound_cipher(block_engine, *args, etm=etm, **kwargs)


packetizer.set_inbound_cipher = set_inbound_cipher_recording
transport._handler_table = dict(transport._handler_table)
transport._handler_table[paramiko.common.MSG_UNIMPLEMENTED] = on_unimplemented
server = Server()
transport.start_server(server=server)
if not server.forwarded.wait(30):
    say("error no tcpip-forward request")
    sys.exit(1)
say("forward", *server.forward)


def flood(count, size, types):
    payload = bytes(size)
    for _ in range(count):
        for kind in types:
            m = Message()
            m.add_byte(bytes([kind]))
            m.add_bytes(payload)
            transport._send_user_message(m)


def echo(data):
    """Sends data through flytube's forward to its echo target; returns what came back."""
    channel = transport.open_forwarded_tcpip_channel(("127.0.0.1", 40000), server.forward)
    channel.settimeout(30)

    def send():
        channel.sendall(data)
        channel.shutdown_write()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    back = []
    while True:
        chunk = channel.recv(65536)
        if not chunk:
            break
        back.append(chunk)
    sender.join()
    channel.close()
    return b"".join(back)


held = []


def hold():
    """Opens a channel and sends on it until flytube stops reading it (its target does
    not read), leaving one byte of window open."""
    channel = transport.open_forwarded_tcpip_channel(("127.0.0.1", 40001), server.forward)
    held.append(channel)
    still_since = None
    deadline = time.time() + 30
    while time.time() < deadline:
        window = channel.out_window_size
        if window > 1:
            channel.send(bytes(min(window - 1, 32768)))
            still_since = None
        elif still_since is None:
            still_since = time.time()
        elif time.time() - still_since >= 1:
            return
        else:
            time.sleep(0.05)
    raise TimeoutError("flytube kept reading the held channel")


def empty_data(count):
    for _ in range(count):
        m = Message()
        m.add_byte(paramiko.common.cMSG_CHANNEL_DATA)
        m.add_int(held[0].remote_chanid)
        m.add_string(b"")
        transport._send_user_message(m)


def coalesced(rounds):
    """Round trips whose data packet comes in one socket write right behind an
    SSH_MSG_IGNORE, so flytube's first recv() takes both: libssh2 must deal with every
    byte it received before it stops reading, or the data waits in its buffer, where
    poll() cannot see it, until something else wakes flytube."""
    channel = transport.open_forwarded_tcpip_channel(("127.0.0.1", 40002), server.forward)
    channel.settimeout(10)
    times = []
    for i in range(rounds):
        text = "coalesced-{}".format(i).encode()
        out = []
        with packetizer._Packetizer__write_lock:
            write_all = packetizer.write_all
            packetizer.write_all = out.append
            try:
                ignore = Message()
                ignore.add_byte(paramiko.common.cMSG_IGNORE)
                ignore.add_string(b"x")
                packetizer.send_message(ignore)
                data = Message()
                data.add_byte(paramiko.common.cMSG_CHANNEL_DATA)
                data.add_int(channel.remote_chanid)
                data.add_string(text)
                packetizer.send_message(data)
            finally:
                packetizer.write_all = write_all
            start = time.monotonic()
            write_all(b"".join(out))
        back = b""
        while len(back) < len(text):
            chunk = channel.recv(65536)
            if not chunk:
                break
            back += chunk
        times.append(time.monotonic() - start)
        if back != text:
            raise ValueError("sent {!r}, {!r} came back".format(text, back))
    channel.close()
    times.sort()
    return "{:.1f} {:.1f}".format(times[len(times) // 2] * 1000, times[-1] * 1000)


def with_timeout(seconds, fn):
    result = {}

    def run():
        try:
            result["value"] = fn()
        except Exception as e:  # reported to the test
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError("no answer in {}s".format(seconds))
    if "error" in result:
        raise result["error"]
    return result.get("value")


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    try:
        if words[0] == "flood":
            count, size = int(words[1]), int(words[2])
            flood(count, size, [int(t) for t in words[3:]])
            say("ok flooded")
        elif words[0] == "echo":
            text = " ".join(words[1:])
            say("ok", with_timeout(30, lambda: echo(text.encode())).decode(errors="replace"))
        elif words[0] == "bulk":
            data = os.urandom(int(words[1]))
            back = with_timeout(60, lambda: echo(data))
            if back == data:
                say("ok", len(back), "bytes echoed")
            else:
                say("error", len(back), "of", len(data), "bytes came back, or different ones")
        elif words[0] == "keepalive":
            reply = with_timeout(
                10, lambda: transport.global_request("keepalive@openssh.com", wait=True)
            )
            say("ok", "success" if reply is not None else "failure")
        elif words[0] == "stall":
            stall[0] = float(words[1])
            say("ok")
        elif words[0] == "hold":
            hold()
            say("ok held")
        elif words[0] == "empty":
            empty_data(int(words[1]))
            say("ok sent")
        elif words[0] == "unimplemented":
            counts = sorted(answered.items(), key=lambda kv: str(kv[0]).zfill(3))
            say("ok", *("{}:{}".format(kind, n) for kind, n in counts))
        elif words[0] == "coalesced":
            say("ok", with_timeout(120, lambda: coalesced(int(words[1]))))
        elif words[0] == "padding":
            seen = list(paddings)
            zeroed = sum(1 for p in seen if not any(p))
            say("ok", len(seen), len(set(seen)), zeroed)
        elif words[0] == "rekey":
            with_timeout(30, transport.renegotiate_keys)
            say("ok rekeyed")
        elif words[0] in ("rekey-mac", "rekey-cipher"):
            options = transport.get_security_options()
            if words[0] == "rekey-mac":
                options.digests = (words[1],)
            else:
                options.ciphers = (words[1],)
            try:
                with_timeout(30, transport.renegotiate_keys)
                say("ok rekeyed")
            except Exception as e:
                say("ok failed", type(e).__name__, e)
        else:
            say("error unknown command", words[0])
    except Exception as e:
        say("error", type(e).__name__, e)
transport.close()
