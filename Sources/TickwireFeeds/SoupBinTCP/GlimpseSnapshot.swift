/// A GLIMPSE-style snapshot: the ITCH 5.0 messages that rebuild the state of the market at one point of a
/// MoldUDP64 session, then an end-of-snapshot message naming the session's sequence number to resume from.
///
/// The messages, in order: the last System Event (S); a Stock Directory (R) per known stock locate (the one the
/// feed sent, or one made from the symbol alone — category and lot size unknown: spaces and 0 — when the feed
/// started mid-session); the last Stock Trading Action (H) per locate; an Add Order (A) for every resting order,
/// in the order it took its place (time priority), with the shares that remain and its original timestamp; then
/// the end of snapshot:
///
/// ```
///  0     1                      21
///  +-----+----------------------+
///  | 'G' | sequence number (20) |   ASCII digits, right-justified, space-padded: the next MoldUDP64
///  +-----+----------------------+   sequence number (the first one the snapshot does not include)
/// ```
/// as NASDAQ GLIMPSE 5.0's End of Snapshot message.
public enum GlimpseSnapshot {
    public static let endOfSnapshotType = UInt8(ascii: "G")
    public static let endOfSnapshotLength = 1 + SoupBinTCP.sequenceSize

    public static func endOfSnapshot(nextSequence: UInt64) -> [UInt8] {
        [endOfSnapshotType] + SoupBinTCP.numeric(nextSequence, SoupBinTCP.sequenceSize)
    }

    /// The next sequence of an end-of-snapshot message, or nil when `message` is not a well-formed one.
    public static func parseEndOfSnapshot(_ message: ArraySlice<UInt8>) -> UInt64? {
        guard message.count == endOfSnapshotLength, message.first == endOfSnapshotType else { return nil }
        return SoupBinTCP.parseNumeric(message.dropFirst())
    }
}

/// The state a GLIMPSE snapshot is made of, kept by applying every ITCH message of a session in order (the
/// player applies each message as it sends it). Not on any hot path: dictionaries, copies.
public struct ITCHSnapshotState: Sendable {
    struct Order: Sendable {
        var locate: UInt16, side: UInt8, shares: UInt32, price: UInt32
        /// When it took its place in the queue (a replace loses priority), for time priority in the snapshot.
        var rank: UInt64
        var timestamp: UInt64
    }
    var orders: [UInt64: Order] = [:]
    var stocks: [UInt16: UInt64] = [:]
    var directory: [UInt16: [UInt8]] = [:]
    var tradingAction: [UInt16: [UInt8]] = [:]
    var systemEvent: [UInt8]? = nil
    var rank: UInt64 = 0
    /// Messages applied: the snapshot's next sequence is this + 1 for a session numbered from 1.
    public private(set) var applied: UInt64 = 0

    public init() {}

    public var restingOrders: Int { orders.count }

    /// Applies one validated message.
    public mutating func apply(_ m: ITCHMessage) {
        applied &+= 1
        let locate = m.stockLocate
        switch m.typeByte {
        case 0x41, 0x46: // A F
            stocks[locate] = m.stock(24).raw
            if orders[m.orderReference] == nil {
                rank &+= 1
                orders[m.orderReference] = Order(locate: locate, side: m.sideByte, shares: m.shares, price: m.price,
                                                 rank: rank, timestamp: m.timestamp)
            }
        case 0x45, 0x43, 0x58: // E C X
            let ref = m.orderReference
            guard var o = orders[ref] else { return }
            let taken = min(o.shares, m.executedShares)
            o.shares -= taken
            if o.shares == 0 { orders[ref] = nil } else { orders[ref] = o }
        case 0x44: // D
            orders[m.orderReference] = nil
        case 0x55: // U
            guard var o = orders.removeValue(forKey: m.orderReference) else { return }
            if orders[m.replaceNewReference] != nil { return }
            rank &+= 1
            o.shares = m.replaceShares; o.price = m.replacePrice; o.rank = rank; o.timestamp = m.timestamp
            orders[m.replaceNewReference] = o
        case 0x52: // R
            stocks[locate] = m.stock(11).raw
            directory[locate] = bytes(m)
        case 0x48: // H
            stocks[locate] = m.stock(11).raw
            tradingAction[locate] = bytes(m)
        case 0x53: // S
            systemEvent = bytes(m)
        default:
            if let s = m.carriedStock { stocks[locate] = s.raw }
        }
    }

    func bytes(_ m: ITCHMessage) -> [UInt8] { Array(UnsafeRawBufferPointer(start: m.base, count: m.length)) }

    /// The snapshot's messages, each to `body` in order, the end of snapshot last.
    public func forEachMessage(nextSequence: UInt64, _ body: ([UInt8]) -> Void) {
        if let s = systemEvent { body(s) }
        for locate in stocks.keys.sorted() {
            body(directory[locate] ?? Self.directory(locate: locate, stock: stocks[locate]!))
        }
        for locate in tradingAction.keys.sorted() { body(tradingAction[locate]!) }
        for (ref, o) in orders.sorted(by: { $0.value.rank < $1.value.rank }) {
            body(Self.addOrder(reference: ref, o, stock: stocks[o.locate] ?? 0))
        }
        body(GlimpseSnapshot.endOfSnapshot(nextSequence: nextSequence))
    }

    static func header(_ type: Character, _ locate: UInt16, _ timestamp: UInt64, into out: inout [UInt8]) {
        out.append(type.asciiValue!)
        out.append(UInt8(locate >> 8)); out.append(UInt8(locate & 0xff))
        out.append(0); out.append(0)
        for i in (0..<6).reversed() { out.append(UInt8(truncatingIfNeeded: timestamp >> (8 * UInt64(i)))) }
    }

    static func append<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        for i in (0..<(T.bitWidth / 8)).reversed() { out.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }

    static func stockBytes(_ raw: UInt64) -> [UInt8] {
        // `ITCHStock.raw` holds the wire's bytes with byte 0 in the low bits.
        (0..<8).map { UInt8(truncatingIfNeeded: raw >> (8 * UInt64($0))) }
    }

    /// An Add Order (A, 36 bytes) for a resting order.
    static func addOrder(reference: UInt64, _ o: Order, stock: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(36)
        header("A", o.locate, o.timestamp, into: &out)
        append(reference, to: &out)
        out.append(o.side)
        append(o.shares, to: &out)
        out += stockBytes(stock)
        append(o.price, to: &out)
        return out
    }

    /// A Stock Directory (R, 39 bytes) made from the symbol alone: every other field unknown (spaces, 0).
    static func directory(locate: UInt16, stock: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        header("R", locate, 0, into: &out)
        out += stockBytes(stock)
        out += [0x20, 0x20]                 // market category, financial status
        append(UInt32(0), to: &out)         // round lot size
        out += [0x20, 0x20]                 // round lots only, issue classification
        out += [0x20, 0x20]                 // issue sub-type
        out += [0x20, 0x20, 0x20, 0x20, 0x20]  // authenticity, short sale threshold, IPO flag, LULD tier, ETP flag
        append(UInt32(0), to: &out)         // ETP leverage factor
        out.append(0x20)                    // inverse indicator
        precondition(out.count == ITCHMessageType.stockDirectory.length)
        return out
    }
}
