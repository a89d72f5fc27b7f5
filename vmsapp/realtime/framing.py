"""WebSocket frames after the handshake: bytes in, messages out, and back.

On a socket with permessage-deflate (VMS_WS_COMPRESSION) or a reader thread
(gthread), wsproto does the handshake and keeps the frames: ``WsprotoFrames``.
Under gevent, on an uncompressed socket, websockets' sans-I/O protocol reads
and writes them once the connection is open: ``Frames``. It parses a
heartbeat's frame in a third of the time wsproto takes, and wsproto's parsing
was the largest single piece of a heartbeat's CPU; a heartbeat now costs
about a fifth less (BENCHMARKS.md).

Either one records what it reads on simple-websocket's connection object,
where ``Peer`` and simple-websocket look for it: ``input_buffer`` (messages),
``pong_received``, ``connected``, ``close_reason`` and ``close_message``.

Two differences from wsproto, neither seen by a peer that keeps to the
protocol: the message size limit counts bytes, not characters, and a ping
inside a fragmented message counts towards its message's limit."""

from websockets.exceptions import InvalidState
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Protocol, Side, State
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

# What encoding for a connection that closed meanwhile raises, from either library.
CLOSED_ERRORS = (LocalProtocolError, InvalidState)
# A close frame's payload is at most 125 bytes, two of them the code.
MAX_CLOSE_REASON_BYTES = 123


def read_by_websockets(environ, inline):
    """Whether the frames of a socket upgraded by ``environ`` are websockets'
    (``Frames``): its own greenlet reads them (``inline``) and its peer offered
    no extension. Otherwise they are wsproto's, which then answers the
    handshake too (``upgrade.WebSocket``)."""
    return inline and not environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS")


def frames_for(ws):
    """The frames of ``ws`` (a simple-websocket server connection, open):
    wsproto's where its connection answered the handshake and holds the
    socket's state, websockets' where the handshake left it out
    (``upgrade.WebSocket``, by ``read_by_websockets``)."""
    return WsprotoFrames(ws) if ws.ws is not None else Frames(ws)


class Frames:
    """An open, uncompressed server connection's frames, by websockets."""

    def __init__(self, ws):
        self._ws = ws
        self._protocol = Protocol(Side.SERVER, state=State.OPEN, max_size=ws.max_message_size)
        self._opcode = None  # of the fragmented message being read, if one is
        self._fragments = []

    def receive(self, data):
        """Read ``data`` from the socket; what to write back (pongs, close
        frames), as a list of chunks, where an empty one asks to shut the
        socket for writing."""
        protocol = self._protocol
        protocol.receive_data(data)
        ws = self._ws
        for frame in protocol.events_received():
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if not frame.fin:
                    self._opcode, self._fragments = opcode, [frame.data]
                elif not self._deliver(opcode, frame.data):
                    break  # failed: nothing after this frame counts
            elif opcode is Opcode.CONT:
                self._fragments.append(frame.data)
                if frame.fin:
                    opcode, data = self._opcode, b"".join(self._fragments)
                    self._opcode, self._fragments = None, []
                    if not self._deliver(opcode, data):
                        break
            elif opcode is Opcode.PONG:
                ws.pong_received = True
            # PING and CLOSE: the protocol has queued the reply.
        if protocol.state is not State.OPEN:
            self._record_close()
        return protocol.data_to_send()

    def _deliver(self, opcode, data):
        """Add a whole message to the input buffer; False if it is text and
        not UTF-8, which fails the connection (1007)."""
        if opcode is Opcode.BINARY:
            self._ws.input_buffer.append(bytes(data))
            return True
        try:
            self._ws.input_buffer.append(data.decode())
            return True
        except UnicodeDecodeError as error:
            # wsproto checks UTF-8 as it parses; websockets leaves it to the reader.
            self._protocol.fail(CloseCode.INVALID_DATA,
                                f"{error.reason} at position {error.start}")
            return False

    def _record_close(self):
        """Closing, by the peer (its close frame gives the reason) or by the
        server, for a broken frame (the reason stays "none received": the
        peer's close frame will not be read, but ``Peer.finish_close`` waits
        for the end of its stream, which the half-close hastens)."""
        ws = self._ws
        ws.connected = False
        close = self._protocol.close_rcvd
        if close is not None:
            ws.close_reason, ws.close_message = close.code, close.reason

    def encode(self, texts):
        """Text frames for ``texts``, as chunks to write at once."""
        return [Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=())
                for text in texts]

    def ping(self):
        """A ping frame, as chunks."""
        self._protocol.send_ping(b"")
        return self._protocol.data_to_send()

    def close(self, code, reason):
        """A close frame with ``code`` and ``reason`` (cut to fit, as wsproto
        does: it may quote what the peer sent), as chunks."""
        reason = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
        self._protocol.send_close(code, reason)
        return self._protocol.data_to_send()

    @property
    def finished(self):
        """Whether the peer's close frame came."""
        return self._protocol.close_rcvd is not None


class WsprotoFrames:
    """A connection's frames through simple-websocket's own wsproto
    connection and event handling (which writes its replies itself)."""

    def __init__(self, ws):
        self._ws = ws

    def receive(self, data):
        """Read ``data`` from the socket; nothing is left to write back."""
        ws = self._ws
        ws.ws.receive_data(data)
        ws.connected = ws._handle_events()
        return []

    def encode(self, texts):
        """Text frames for ``texts``, as chunks to write at once."""
        return [self._ws.ws.send(TextMessage(data=text)) for text in texts]

    def ping(self):
        """A ping frame, as chunks."""
        return [self._ws.ws.send(Ping())]

    def close(self, code, reason):
        """A close frame with ``code`` and ``reason`` (wsproto cuts it to fit), as chunks."""
        return [self._ws.ws.send(CloseConnection(code, reason))]

    @property
    def finished(self):
        """Whether the closing handshake is over."""
        return self._ws.ws.state is ConnectionState.CLOSED
