import TickwireCore

/// A trade as submitted: who (the trader comes from the CURVE key that authenticated, never from the message),
/// what, and the client's own order id, which makes a retry idempotent.
public struct TradeRequest: Sendable, Equatable {
    /// The authenticated trader (the ZAP User-Id); empty in a request a client builds.
    public var trader: String
    public var desk: String
    public var symbol: String
    public var side: Side
    public var quantity: Quantity
    public var price: Price
    public var clientOrderID: String

    public init(trader: String = "", desk: String, symbol: String, side: Side, quantity: Quantity, price: Price,
                clientOrderID: String) {
        self.trader = trader; self.desk = desk; self.symbol = symbol; self.side = side
        self.quantity = quantity; self.price = price; self.clientOrderID = clientOrderID
    }

    /// `TRADE.<DESK>.<SYMBOL>`, the subject the trade is published on.
    public var subject: String { "TRADE.\(desk).\(symbol)" }

    /// The first problem with the fields, or nil.
    public func validationError() -> RejectReason? {
        func token(_ name: String, _ v: String) -> RejectReason? {
            let ok = !v.isEmpty && v.utf8.count <= TradeWire.maxToken && v.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x5f || $0 == 0x2d
            }
            return ok ? nil : RejectReason(.invalidField, "\(name) '\(v)' must be 1-\(TradeWire.maxToken) characters of [A-Za-z0-9_-]")
        }
        if let r = token("desk", desk) ?? token("symbol", symbol) { return r }
        if side != .buy && side != .sell { return RejectReason(.invalidField, "side must be buy or sell") }
        if quantity.e8 <= 0 { return RejectReason(.invalidField, "quantity must be positive, got \(quantity)") }
        if price.e8 <= 0 { return RejectReason(.invalidField, "price must be positive, got \(price)") }
        let idOK = !clientOrderID.isEmpty && clientOrderID.utf8.count <= TradeWire.maxClientOrderID
            && clientOrderID.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f && $0 != 0x22 && $0 != 0x5c }
        if !idOK { return RejectReason(.invalidField, "client order id must be 1-\(TradeWire.maxClientOrderID) printable ASCII characters without quotes or backslashes") }
        return nil
    }
}

/// Why a trade was not accepted.
public struct RejectReason: Sendable, Equatable, CustomStringConvertible, Error {
    public enum Code: UInt8, Sendable {
        case malformed = 1
        case invalidField = 2
        /// The pre-trade check (risk) refused it.
        case preTradeCheck = 3
        /// The journal could not make it durable (disk full, I/O error); nothing was recorded.
        case journalUnavailable = 4
        case unauthenticated = 5
        /// The client order id was already journaled for a trade with other contents (an id names one trade).
        case idInUse = 6
        /// Replicated trading: the replicated log did not take the trade, or did not confirm it in time (the
        /// cluster is unavailable, an election is under way) or this daemon is not caught up with it yet. The
        /// text says whether the trade may still be recorded; resending the same id tells its outcome.
        case replicationUnavailable = 7
    }
    public var code: Code
    public var text: String
    public init(_ code: Code, _ text: String) { self.code = code; self.text = text }
    public var description: String { text }
}

/// The daemon's answer to one request.
public enum TradeReply: Sendable, Equatable {
    /// Durable under sequence `seq`; `duplicate` when this answers a retry of an id already journaled.
    case ack(clientOrderID: String, seq: UInt64, duplicate: Bool)
    case reject(clientOrderID: String, RejectReason)

    public var clientOrderID: String {
        switch self { case .ack(let id, _, _), .reject(let id, _): id }
    }
}

/// Byte codecs for the submission protocol (docs/PROTOCOL.md, "Trade submission") and the journaled record.
public enum TradeWire {
    public static let version: UInt8 = 1
    public static let submit: UInt8 = 0x01, ack: UInt8 = 0x02, reject: UInt8 = 0x03
    /// A batch's SUBMIT frames in one frame, and its replies in one frame (docs/PROTOCOL.md, "Packed batches"):
    /// ZeroMQ's CURVE seals every frame in its own box, so a batch of 64 frames costs 64 boxes each way, a
    /// packed one one.
    public static let submitPacked: UInt8 = 0x04, repliesPacked: UInt8 = 0x05
    public static let maxToken = 32
    public static let maxClientOrderID = 64
    /// The most trades one request message may carry (SUBMIT frames, or the frames packed in one).
    public static let maxTradesPerMessage = 1024
    /// The largest frame the trade service accepts: a peer that sends a larger one is disconnected by ZeroMQ
    /// (ZMQ_MAXMSGSIZE). A SUBMIT frame is at most 788 bytes, so a packed frame of 1,024 of them fits.
    public static let maxFrameBytes = 1 << 20

    struct Reader {
        let bytes: [UInt8]
        var at = 0
        /// Where this reader's frame ends (a frame packed in a larger one ends before `bytes` does).
        var end: Int
        init(bytes: [UInt8], at: Int = 0, end: Int? = nil) { self.bytes = bytes; self.at = at; self.end = end ?? bytes.count }
        mutating func u8() -> UInt8? { guard at < end else { return nil }; at += 1; return bytes[at - 1] }
        mutating func u16() -> UInt16? { guard let lo = u8(), let hi = u8() else { return nil }; return UInt16(lo) | UInt16(hi) << 8 }
        mutating func u64() -> UInt64? {
            guard at + 8 <= end else { return nil }
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
            at += 8
            return v
        }
        mutating func text(length: Int) -> String? {
            guard at + length <= end else { return nil }
            defer { at += length }
            return String(decoding: bytes[at..<at + length], as: UTF8.self)
        }
        mutating func shortText() -> String? { guard let n = u8() else { return nil }; return text(length: Int(n)) }
    }

    static func put(_ v: UInt64, _ out: inout [UInt8]) { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    static func putShort(_ s: String, _ out: inout [UInt8]) {
        var s = s
        s.withUTF8 { b in
            let n = min(b.count, 255)
            out.append(UInt8(n))
            out.append(contentsOf: UnsafeBufferPointer(rebasing: b[..<n]))
        }
    }

    /// A SUBMIT frame.
    public static func encodeRequest(_ r: TradeRequest) -> [UInt8] {
        var out: [UInt8] = [submit, version, r.side.rawValue, 0]
        out.reserveCapacity(23 + r.desk.utf8.count + r.symbol.utf8.count + r.clientOrderID.utf8.count)
        put(UInt64(bitPattern: r.quantity.e8), &out)
        put(UInt64(bitPattern: r.price.e8), &out)
        putShort(r.desk, &out); putShort(r.symbol, &out); putShort(r.clientOrderID, &out)
        return out
    }

    /// Decodes a SUBMIT frame (fields are validated separately). - Throws: `.malformed` naming the byte offset.
    public static func decodeRequest(_ bytes: [UInt8]) throws(RejectReason) -> TradeRequest {
        var r = Reader(bytes: bytes)
        guard let type = r.u8(), type == submit else { throw RejectReason(.malformed, "byte 0: not a SUBMIT (0x01) frame") }
        guard let v = r.u8(), v == version else { throw RejectReason(.malformed, "byte 1: unsupported version") }
        guard let side = r.u8(), let _ = r.u8(), let qty = r.u64(), let price = r.u64() else {
            throw RejectReason(.malformed, "frame of \(bytes.count) bytes ends inside the fixed fields (20 bytes)")
        }
        guard let desk = r.shortText(), let symbol = r.shortText(), let id = r.shortText() else {
            throw RejectReason(.malformed, "byte \(r.at): desk, symbol or client order id runs past the end")
        }
        guard r.at == bytes.count else { throw RejectReason(.malformed, "byte \(r.at): \(bytes.count - r.at) trailing bytes") }
        return TradeRequest(desk: desk, symbol: symbol, side: Side(rawValue: side) ?? .unknown,
                            quantity: Quantity(e8: Int64(bitPattern: qty)), price: Price(e8: Int64(bitPattern: price)),
                            clientOrderID: id)
    }

    public static func encodeReply(_ reply: TradeReply) -> [UInt8] {
        switch reply {
        case .ack(let id, let seq, let duplicate):
            var out: [UInt8] = [ack, version, duplicate ? 1 : 0, 0]
            out.reserveCapacity(13 + id.utf8.count)
            put(seq, &out)
            putShort(id, &out)
            return out
        case .reject(let id, let reason):
            var out: [UInt8] = [reject, version, reason.code.rawValue, 0]
            putShort(id, &out)
            let text = Array(reason.text.utf8.prefix(1024))
            out.append(UInt8(text.count & 0xff)); out.append(UInt8(text.count >> 8))
            out.append(contentsOf: text)
            return out
        }
    }

    public static func decodeReply(_ bytes: [UInt8]) throws(RejectReason) -> TradeReply {
        try decodeReply(Reader(bytes: bytes))
    }

    static func decodeReply(_ reader: Reader) throws(RejectReason) -> TradeReply {
        var r = reader
        guard let type = r.u8(), let v = r.u8(), v == version, let flags = r.u8(), let _ = r.u8() else {
            throw RejectReason(.malformed, "reply of \(r.end - reader.at) bytes is too short or of another version")
        }
        switch type {
        case ack:
            guard let seq = r.u64(), let id = r.shortText() else { throw RejectReason(.malformed, "ACK truncated") }
            return .ack(clientOrderID: id, seq: seq, duplicate: flags & 1 != 0)
        case reject:
            guard let id = r.shortText(), let n = r.u16(), let text = r.text(length: Int(n)) else {
                throw RejectReason(.malformed, "REJECT truncated")
            }
            return .reject(clientOrderID: id, RejectReason(RejectReason.Code(rawValue: flags) ?? .malformed, text))
        default:
            throw RejectReason(.malformed, "byte 0: unknown reply type \(type)")
        }
    }

    /// One frame holding `frames` (SUBMIT frames, or replies): type, version, u16 count, then each frame as a u16
    /// length and its bytes.
    public static func pack(_ type: UInt8, _ frames: some Collection<[UInt8]>) -> [UInt8] {
        precondition(frames.count <= Int(UInt16.max))
        // One allocation of the exact size, written in place.
        return [UInt8](unsafeUninitializedCapacity: 4 + frames.reduce(0) { $0 + 2 + $1.count }) { out, initialized in
            out[0] = type; out[1] = version; out[2] = UInt8(frames.count & 0xff); out[3] = UInt8(frames.count >> 8)
            var at = 4
            for f in frames {
                precondition(f.count <= Int(UInt16.max))
                out[at] = UInt8(f.count & 0xff); out[at + 1] = UInt8(f.count >> 8)
                _ = UnsafeMutableBufferPointer(rebasing: out[at + 2..<at + 2 + f.count]).initialize(from: f)
                at += 2 + f.count
            }
            initialized = at
        }
    }

    /// The frames `pack` put in `bytes`. - Throws: `.malformed` naming the byte offset where it is wrong.
    public static func unpack(_ bytes: [UInt8], type: UInt8) throws(RejectReason) -> [[UInt8]] {
        try unpackRanges(bytes, type: type).map { Array(bytes[$0]) }
    }

    /// The replies in a packed reply frame, decoded where they lie. - Throws: `.malformed`.
    public static func decodeReplies(packed bytes: [UInt8]) throws(RejectReason) -> [TradeReply] {
        var replies: [TradeReply] = []
        for r in try unpackRanges(bytes, type: repliesPacked) { replies.append(try decodeReply(Reader(bytes: bytes, at: r.lowerBound, end: r.upperBound))) }
        return replies
    }

    /// The replies of one reply message: a packed frame of them, or one frame a reply. - Throws: `.malformed`.
    public static func decodeReplies(message frames: [[UInt8]]) throws(RejectReason) -> [TradeReply] {
        if frames.count == 1 && frames[0].first == repliesPacked { return try decodeReplies(packed: frames[0]) }
        return try frames.map { bytes throws(RejectReason) in try decodeReply(bytes) }
    }

    /// Where each frame lies in a packed frame.
    static func unpackRanges(_ bytes: [UInt8], type: UInt8) throws(RejectReason) -> [Range<Int>] {
        var r = Reader(bytes: bytes)
        guard bytes.count >= 4 else { throw RejectReason(.malformed, "packed frame of \(bytes.count) bytes ends inside its 4-byte header") }
        guard r.u8() == type else { throw RejectReason(.malformed, "byte 0: not a packed frame (0x0\(type))") }
        guard r.u8() == version else { throw RejectReason(.malformed, "byte 1: unsupported version") }
        let count = r.u16()!
        guard count > 0 else { throw RejectReason(.malformed, "byte 2: a packed frame holds at least one frame") }
        var frames: [Range<Int>] = []
        frames.reserveCapacity(Int(count))
        for i in 0..<Int(count) {
            let at = r.at
            guard let n = r.u16(), r.at + Int(n) <= bytes.count else {
                throw RejectReason(.malformed, "byte \(at): frame \(i + 1) of \(count) runs past the end of the packed frame")
            }
            frames.append(r.at..<r.at + Int(n))
            r.at += Int(n)
        }
        guard r.at == bytes.count else { throw RejectReason(.malformed, "byte \(r.at): \(bytes.count - r.at) trailing bytes") }
        return frames
    }

    /// The journaled payload of an accepted trade (version 1): u8 version, u8 side, u16 0, i64 quantity e8,
    /// i64 price e8, then length-prefixed (u8) trader, desk, symbol, client order id.
    public static func encodeRecord(_ t: TradeRequest) -> [UInt8] {
        var out: [UInt8] = [version, t.side.rawValue, 0, 0]
        out.reserveCapacity(24 + t.trader.utf8.count + t.desk.utf8.count + t.symbol.utf8.count + t.clientOrderID.utf8.count)
        put(UInt64(bitPattern: t.quantity.e8), &out)
        put(UInt64(bitPattern: t.price.e8), &out)
        putShort(t.trader, &out); putShort(t.desk, &out); putShort(t.symbol, &out); putShort(t.clientOrderID, &out)
        return out
    }

    /// The trade a journaled payload records as accepted: a version-1 record, or a version-2 decision record
    /// (replicated trading) that accepted it; nil for anything else (a duplicate, a rejection, damage).
    public static func decodeRecord(_ bytes: [UInt8]) -> TradeRequest? {
        if bytes.first == 2 {
            guard let d = decodeDecision(bytes), case .accepted = d.decision else { return nil }
            return d.request
        }
        var r = Reader(bytes: bytes)
        guard r.u8() == version, let side = r.u8(), r.u16() != nil, let qty = r.u64(), let price = r.u64(),
              let trader = r.shortText(), let desk = r.shortText(), let symbol = r.shortText(), let id = r.shortText(),
              r.at == bytes.count else { return nil }
        return TradeRequest(trader: trader, desk: desk, symbol: symbol, side: Side(rawValue: side) ?? .unknown,
                            quantity: Quantity(e8: Int64(bitPattern: qty)), price: Price(e8: Int64(bitPattern: price)),
                            clientOrderID: id)
    }

    /// The JSON fields of a journaled payload (for `tickwire audit`): the trade's, and for a decision record the
    /// decision, the mark it was judged at and where the request came in.
    public static func auditFields(_ payload: [UInt8]) -> String? {
        guard payload.first == 2 else { return decodeRecord(payload).map(jsonFields) }
        guard let d = decodeDecision(payload) else { return nil }
        let decision: String
        switch d.decision {
        case .accepted:
            decision = "\"decision\":\"accepted\"" + (d.formerSeq == 0 ? "" : ",\"reinstated_from_seq\":\(d.formerSeq)")
        case .duplicate(let of): decision = "\"decision\":\"duplicate\",\"of_seq\":\(of)"
        case .rejected(let why):
            decision = "\"decision\":\"rejected\",\"reject_code\":\(why.code.rawValue),\"reason\":\(jsonQuoted(why.text))"
        }
        return jsonFields(d.request) + ",\(decision),\"mark\":\"\(Price(e8: d.markE8))\",\"origin\":\"\(d.origin)\""
    }

    /// `s` as a JSON string literal.
    public static func jsonQuoted(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where c.value < 0x20: out += "\\u00" + (c.value < 0x10 ? "0" : "") + String(c.value, radix: 16)
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    /// What the deterministic apply of one replicated request decided.
    public enum Decision: Sendable, Equatable {
        case accepted
        /// The id was already a trade, at this sequence, with the same contents.
        case duplicate(of: UInt64)
        case rejected(RejectReason)
    }

    /// A replicated request as the log carries it (docs/STORAGE.md, "Replicated trades"): u8 version 1,
    /// u8 ×3 zero, i64 time the taking daemon received it (ns), i64 the mark its market checks used (e8, 0 none),
    /// u8-prefixed name of that daemon, then the version-1 record of the trade (trader included).
    ///
    /// A trade the log had confirmed and then lost in an election goes back into the log as version 2, which adds
    /// a u64 after the mark: the sequence it was accepted at first (`formerSeq`). Every replica accepts it again
    /// without the position checks, so an acknowledged decision is never taken back.
    public static func encodeSequenced(_ t: TradeRequest, receivedNanos: Int64, markE8: Int64, origin: String,
                                       formerSeq: UInt64 = 0) -> [UInt8] {
        var out: [UInt8] = [formerSeq == 0 ? 1 : 2, 0, 0, 0]
        put(UInt64(bitPattern: receivedNanos), &out)
        put(UInt64(bitPattern: markE8), &out)
        if formerSeq != 0 { put(formerSeq, &out) }
        putShort(origin, &out)
        out.append(contentsOf: encodeRecord(t))
        return out
    }

    public static func decodeSequenced(_ bytes: [UInt8])
        -> (request: TradeRequest, receivedNanos: Int64, markE8: Int64, origin: String, formerSeq: UInt64)? {
        var r = Reader(bytes: bytes)
        guard let v = r.u8(), v == 1 || v == 2, r.u8() != nil, r.u16() != nil, let received = r.u64(), let mark = r.u64()
        else { return nil }
        var former: UInt64 = 0
        if v == 2 {
            guard let f = r.u64(), f > 0 else { return nil }
            former = f
        }
        guard let origin = r.shortText(), let t = decodeRecord(Array(bytes[r.at...])) else { return nil }
        return (t, Int64(bitPattern: received), Int64(bitPattern: mark), origin, former)
    }

    /// A decision record (journal payload version 2), one per message of the replicated log, so the journal's
    /// sequence is the log's: u8 version 2, u8 decision (0 accepted, 1 duplicate, 2 rejected), u8 reject code,
    /// u8 0, u64 the original's sequence (duplicate), the sequence a reinstated trade was accepted at first
    /// (accepted; `formerSeq`), or 0, i64 mark e8, u16 reason length + reason (UTF-8), the
    /// u8-prefixed origin daemon, then the version-1 record of the trade.
    public static func encodeDecision(_ d: Decision, request: TradeRequest, markE8: Int64, origin: String,
                                      formerSeq: UInt64 = 0) -> [UInt8] {
        var out: [UInt8] = [2, 0, 0, 0]
        var of: UInt64 = 0
        var text: [UInt8] = []
        switch d {
        case .accepted: of = formerSeq
        case .duplicate(let seq): out[1] = 1; of = seq
        case .rejected(let why): out[1] = 2; out[2] = why.code.rawValue; text = Array(why.text.utf8.prefix(1024))
        }
        put(of, &out)
        put(UInt64(bitPattern: markE8), &out)
        out.append(UInt8(text.count & 0xff)); out.append(UInt8(text.count >> 8))
        out.append(contentsOf: text)
        putShort(origin, &out)
        out.append(contentsOf: encodeRecord(request))
        return out
    }

    public static func decodeDecision(_ bytes: [UInt8])
        -> (decision: Decision, request: TradeRequest, markE8: Int64, origin: String, formerSeq: UInt64)? {
        var r = Reader(bytes: bytes)
        guard r.u8() == 2, let kind = r.u8(), let code = r.u8(), r.u8() != nil, let of = r.u64(), let mark = r.u64(),
              let n = r.u16(), let text = r.text(length: Int(n)), let origin = r.shortText(), r.at < bytes.count,
              bytes[r.at] == version, let t = decodeRecord(Array(bytes[r.at...])) else { return nil }
        let d: Decision
        switch kind {
        case 0: d = .accepted
        case 1: d = .duplicate(of: of)
        case 2: d = .rejected(RejectReason(RejectReason.Code(rawValue: code) ?? .malformed, text))
        default: return nil
        }
        return (d, t, Int64(bitPattern: mark), origin, kind == 0 ? of : 0)
    }

    /// The JSON fields of a journaled trade (for `tickwire audit`), as `"key":value` text.
    public static func jsonFields(_ t: TradeRequest) -> String {
        "\"trader\":\"\(t.trader)\",\"desk\":\"\(t.desk)\",\"symbol\":\"\(t.symbol)\",\"side\":\"\(t.side)\",\"qty\":\"\(t.quantity)\",\"price\":\"\(t.price)\",\"id\":\"\(t.clientOrderID)\""
    }
}
