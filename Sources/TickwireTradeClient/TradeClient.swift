import TickwireCore
import TickwireZMQ
#if canImport(Glibc)
import Glibc
#endif

/// A trader's connection to the trade service: a CURVE-authenticated DEALER, many requests in flight.
/// Used by one thread at a time.
public final class TradeClient {
    private let socket: ZMQSocket

    /// How long a request waits for a connection to take it. A DEALER with none (the daemon down, or this trader's
    /// key refused at the handshake) would hold `send` for ever; after this it is `.noReply`, as for a reply that
    /// never came (nothing was sent, so resending the same id is safe).
    public static let sendTimeoutMs = 5_000

    /// - Parameters:
    ///   - endpoint: one endpoint, or several separated by commas (the daemons of a replicated pair, which share
    ///     the server key and the admitted traders): requests then go round-robin to those connected, none to a
    ///     daemon that is down, and a retry with the same id may be answered by either.
    ///   - serverPublicKey: the service's CURVE public key (Z85).
    ///   - keys: this trader's pair (needs the secret).
    /// - Throws: `TradeServiceError`.
    public init(context: ZMQContext, endpoint: String = "tcp://127.0.0.1:5557", serverPublicKey: String,
                keys: CurveKeyPair) throws {
        guard let secret = keys.secretKey else { throw TradeServiceError.keyFile(path: keys.name, reason: "has no secret key") }
        let endpoints = endpoint.split(separator: ",").map(String.init)
        do {
            socket = try context.socket(.dealer)
            try socket.setCurveClient(serverKey: serverPublicKey, publicKey: keys.publicKey, secretKey: secret)
            try socket.setSendHighWaterMark(0)
            try socket.setReceiveHighWaterMark(0)
            try socket.setSendTimeout(milliseconds: Self.sendTimeoutMs)
            // Queue only to daemons with a completed connection, so that nothing waits in the pipe of a dead one.
            if endpoints.count > 1 { try socket.setImmediate(true) }
            for e in endpoints { try socket.connect(e) }
        } catch { throw TradeServiceError.zmq(error) }
    }

    /// A client with the keys in `DATA/keys/` (the server's public key and the trader `trader`, or the first).
    public static func forDataDirectory(_ data: String, trader: String? = nil, context: ZMQContext,
                                        endpoint: String = "tcp://127.0.0.1:5557") throws -> TradeClient {
        let server = try CurveKeyPair.read(from: KeyStore.serverPath(data))
        return try TradeClient(context: context, endpoint: endpoint, serverPublicKey: server.publicKey,
                               keys: try KeyStore.traderPair(data: data, name: trader))
    }

    /// Replies received in one message and not yet handed out.
    // One thread's (the client is not shared): exclusivity is not checked at run time.
    @exclusivity(unchecked) private var received: [TradeReply] = []
    @exclusivity(unchecked) private var receivedHead = 0

    /// Sends a request without waiting (the reply names its client order id).
    public func send(_ request: TradeRequest) throws {
        do { try socket.send(TradeWire.encodeRequest(request)) } catch { throw Self.notSent(error, request.clientOrderID) }
    }

    /// Sends several requests in one message (at most `TradeWire.maxTradesPerMessage`), packed in one frame: one
    /// CURVE box and one round of the service's loop for all of them. Their replies come back together, in the
    /// same order, packed too. A batch of one is the same message `send(_:)` makes.
    public func send(batch requests: [TradeRequest]) throws {
        try send(encoded: requests.map(EncodedTrade.init))
    }

    /// Sends SUBMIT frames encoded beforehand (`EncodedTrade`) in one message, as `send(batch:)` does.
    public func send(encoded trades: some Collection<EncodedTrade>) throws {
        precondition(!trades.isEmpty && trades.count <= TradeWire.maxTradesPerMessage, "a batch holds 1...\(TradeWire.maxTradesPerMessage) trades")
        do {
            try socket.send(trades.count == 1 ? trades.first!.frame : TradeWire.pack(TradeWire.submitPacked, trades.lazy.map(\.frame)))
        } catch { throw Self.notSent(error, trades.first!.clientOrderID) }
    }

    /// A send that failed: `.noReply` when no connection took it within `sendTimeoutMs` (libzmq's EAGAIN; only a
    /// message's first frame can wait, so nothing of it was sent).
    private static func notSent(_ error: ZMQError, _ clientOrderID: String) -> TradeServiceError {
        error.code == EAGAIN ? .noReply(clientOrderID: clientOrderID, milliseconds: sendTimeoutMs) : .zmq(error)
    }

    /// Whether a reply already received (in the message of an earlier one) waits to be handed out.
    public var hasBufferedReply: Bool { receivedHead < received.count }

    /// Waits until a reply can be received or `fd` is readable, at most `timeoutMs`. - Returns: which is ready.
    public func waitForReply(orInput fd: Int32, timeoutMs: Int) throws -> (reply: Bool, input: Bool) {
        if hasBufferedReply { return (true, false) }
        do { let r = try socket.waitReadable(orFD: fd, timeoutMs: timeoutMs); return (r.socket, r.fd) }
        catch { throw TradeServiceError.zmq(error) }
    }

    /// The next reply, or nil after `timeoutMs` (-1: wait forever).
    public func receive(timeoutMs: Int) throws -> TradeReply? {
        if receivedHead < received.count {
            receivedHead += 1
            return received[receivedHead - 1]
        }
        do {
            // A message already waiting is taken without a poll (the common case while many trades are in flight).
            var message = try socket.receiveMultipart(dontWait: true)
            if message == nil && timeoutMs != 0 {
                guard try socket.waitReadable(timeoutMs: timeoutMs) else { return nil }
                message = try socket.receiveMultipart(dontWait: true)
            }
            guard let frames = message, !frames.isEmpty else { return nil }
            received = try TradeWire.decodeReplies(message: frames)
            receivedHead = 1
            return received[0]
        } catch let e as ZMQError {
            throw TradeServiceError.zmq(e)
        }
    }

    /// Sends one request and waits for its reply. - Throws: `.noReply` after `timeoutMs`.
    public func submit(_ request: TradeRequest, timeoutMs: Int = 5000) throws -> TradeReply {
        try send(request)
        let deadline = Nanos.now().rawValue + Int64(timeoutMs) * 1_000_000
        while true {
            let left = Int((deadline - Nanos.now().rawValue) / 1_000_000)
            guard left > 0, let reply = try receive(timeoutMs: left) else {
                throw TradeServiceError.noReply(clientOrderID: request.clientOrderID, milliseconds: timeoutMs)
            }
            if reply.clientOrderID == request.clientOrderID { return reply }
        }
    }

    public func close() { socket.close() }
}
