/// What an event is. The raw value is the `kind` byte on the wire (docs/PROTOCOL.md); new kinds take new codes.
public enum EventKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case trade = 1
    case quote = 2
    case status = 3
    case bust = 4
    case gap = 5
    case book = 6
    case alert = 7
    case risk = 8

    /// The subject token and JSON name: `TRADE`, `QUOTE`, …
    public var name: String {
        switch self {
        case .trade: "TRADE"
        case .quote: "QUOTE"
        case .status: "STATUS"
        case .bust: "BUST"
        case .gap: "GAP"
        case .book: "BOOK"
        case .alert: "ALERT"
        case .risk: "RISK"
        }
    }

    public var description: String { name }

    public init?(name: String) {
        guard let k = EventKind.allCases.first(where: { $0.name == name }) else { return nil }
        self = k
    }
}

/// The aggressor or order side of a trade.
public enum Side: UInt8, Sendable, CustomStringConvertible {
    case unknown = 0
    case buy = 1
    case sell = 2
    public var description: String { self == .buy ? "buy" : self == .sell ? "sell" : "unknown" }
}

/// An interned subject: the index of its text in a `SubjectTable`. Ring slots carry this, not the text.
public typealias SubjectID = UInt32

/// One event as it moves through the ring: 64 bytes, no references, so a slot copy is a memcpy and nothing
/// on the hot path retains or releases.
///
/// The four payload words `a…d` mean, by kind:
/// - TRADE: price, size, trade id (match number), unused; `flags` is the `Side`.
/// - QUOTE: bid, bid size, ask, ask size.
/// - STATUS: state code (ASCII in the low byte), reason (8 ASCII bytes, little-endian packed); `flags` the category.
/// - BUST: price, size, trade id voided; `flags` the side.
/// - GAP: first lost sequence, last lost sequence (inclusive); `flags` the scope (`Gap.Scope`).
/// - ALERT: rule code, observed value (e8), threshold (e8), reference; RISK: usage words (see `RiskUse`).
@frozen public struct Event: Sendable, Equatable {
    public var subjectID: SubjectID
    public var kind: EventKind
    public var flags: UInt8
    /// Which source produced it (index into the daemon's source list); 0 for the first.
    public var source: UInt16
    public var eventTime: Nanos
    public var knownTime: Nanos
    /// The ring's sequence, assigned when the event enters the ring. On the wire it is replaced by the
    /// sequence within the subject's stream (docs/PROTOCOL.md).
    public var seq: UInt64
    public var a: Int64
    public var b: Int64
    public var c: Int64
    public var d: Int64

    @inlinable
    public init(subjectID: SubjectID, kind: EventKind, flags: UInt8 = 0, source: UInt16 = 0,
                eventTime: Nanos, knownTime: Nanos, seq: UInt64 = 0,
                a: Int64 = 0, b: Int64 = 0, c: Int64 = 0, d: Int64 = 0) {
        self.subjectID = subjectID; self.kind = kind; self.flags = flags; self.source = source
        self.eventTime = eventTime; self.knownTime = knownTime; self.seq = seq
        self.a = a; self.b = b; self.c = c; self.d = d
    }

    /// A zeroed slot value for preallocating rings.
    public static let empty = Event(subjectID: 0, kind: .gap, eventTime: .zero, knownTime: .zero)

    public static func trade(_ subject: SubjectID, price: Price, size: Quantity, side: Side, tradeID: UInt64,
                             eventTime: Nanos, knownTime: Nanos) -> Event {
        Event(subjectID: subject, kind: .trade, flags: side.rawValue, eventTime: eventTime, knownTime: knownTime,
              a: price.e8, b: size.e8, c: Int64(bitPattern: tradeID))
    }

    public static func quote(_ subject: SubjectID, bid: Price, bidSize: Quantity, ask: Price, askSize: Quantity,
                             eventTime: Nanos, knownTime: Nanos) -> Event {
        Event(subjectID: subject, kind: .quote, eventTime: eventTime, knownTime: knownTime,
              a: bid.e8, b: bidSize.e8, c: ask.e8, d: askSize.e8)
    }

    public static func gap(_ subject: SubjectID, first: UInt64, last: UInt64, scope: Gap.Scope,
                           eventTime: Nanos, knownTime: Nanos) -> Event {
        Event(subjectID: subject, kind: .gap, flags: scope.rawValue, eventTime: eventTime, knownTime: knownTime,
              a: Int64(bitPattern: first), b: Int64(bitPattern: last))
    }

    public static func status(_ subject: SubjectID, _ status: Status, eventTime: Nanos, knownTime: Nanos) -> Event {
        Event(subjectID: subject, kind: .status, flags: status.category.rawValue, eventTime: eventTime,
              knownTime: knownTime, a: Int64(status.state), b: Int64(bitPattern: status.reasonPacked))
    }

    /// A STATUS of a category whose words are numbers (`Status.Category.hasNumbers`): w0 is the state in its low
    /// byte and `extra` above it; w1…w3 as the category's row in docs/PROTOCOL.md says.
    public static func status(_ subject: SubjectID, _ category: Status.Category, state: UInt8, extra: UInt64 = 0,
                              _ w1: Int64, _ w2: Int64, _ w3: Int64, eventTime: Nanos, knownTime: Nanos) -> Event {
        Event(subjectID: subject, kind: .status, flags: category.rawValue, eventTime: eventTime, knownTime: knownTime,
              a: Int64(bitPattern: UInt64(state) | extra << 8), b: w1, c: w2, d: w3)
    }

    public static func bust(_ subject: SubjectID, tradeID: UInt64, price: Price = .zero, size: Quantity = .zero,
                            side: Side = .unknown, eventTime: Nanos, knownTime: Nanos) -> Event {
        Event(subjectID: subject, kind: .bust, flags: side.rawValue, eventTime: eventTime, knownTime: knownTime,
              a: price.e8, b: size.e8, c: Int64(bitPattern: tradeID))
    }
}

/// The body of a TRADE.
public struct Trade: Sendable, Equatable {
    public var price: Price
    public var size: Quantity
    public var side: Side
    public var tradeID: UInt64
    public init(price: Price, size: Quantity, side: Side, tradeID: UInt64) {
        self.price = price; self.size = size; self.side = side; self.tradeID = tradeID
    }
}

/// The body of a QUOTE: the top of the book.
public struct Quote: Sendable, Equatable {
    public var bid: Price
    public var bidSize: Quantity
    public var ask: Price
    public var askSize: Quantity
    public init(bid: Price, bidSize: Quantity, ask: Price, askSize: Quantity) {
        self.bid = bid; self.bidSize = bidSize; self.ask = ask; self.askSize = askSize
    }
}

/// The body of a STATUS: a trading-state or session event.
public struct Status: Sendable, Equatable {
    public enum Category: UInt8, Sendable {
        case system = 1         // session events: ITCH S (O, S, Q, M, E, C)
        case trading = 2        // trading state: ITCH H (H halted, P paused, Q quotation only, T trading)
        case shortSale = 3      // Reg SHO: ITCH Y
        case circuitBreaker = 4 // MWCB status: ITCH W
        case ipo = 5            // IPO quoting period: ITCH K
        case luld = 6           // LULD auction collar: ITCH J
        /// Book integrity: state `S` stale (the book is not known to be right: sequences were lost), `C` current
        /// again (rebuilt). Reasons: `GAP`, `SEQJUMP` (an absurd sequence jump), `SNAPSHOT` (rebuilt from one).
        case book = 7
        /// The desk's reference data and auction information (ITCH R, I, V, N; J is `luld`). Their words are
        /// numbers, by category (docs/PROTOCOL.md, "STATUS by category"), not a reason.
        case directory = 8      // ITCH R: market category, round lot size, issue flags
        case imbalance = 9      // ITCH I: paired and imbalance shares, direction
        case indicative = 10    // ITCH I: near, far and current reference prices of the cross
        case mwcbLevels = 11    // ITCH V: the three market-wide circuit breaker levels
        case rpii = 12          // ITCH N: retail price improvement interest
        case other = 255
        /// Categories whose words w1…w3 are numbers (and w0 may carry more than the state in its upper bytes).
        public var hasNumbers: Bool { self == .luld || rawValue >= 8 && self != .other }
    }
    /// A book not known to be right, and why (`GAP`, `SEQJUMP`).
    public static func stale(_ reason: String) -> Status { Status(category: .book, state: UInt8(ascii: "S"), reason: reason) }
    /// A book rebuilt: known to be right again.
    public static let rebuilt = Status(category: .book, state: UInt8(ascii: "C"), reason: "SNAPSHOT")
    /// Whether this STATUS says a book is stale.
    public var isStale: Bool { category == .book && state == UInt8(ascii: "S") }
    public var category: Category
    /// A one-byte ASCII state code (`H`, `T`, `O`, …).
    public var state: UInt8
    /// Up to 8 ASCII bytes of reason (ITCH's 4-byte reason code fits), space- or zero-padded.
    public var reason: String

    public init(category: Category, state: UInt8, reason: String = "") {
        self.category = category; self.state = state; self.reason = String(reason.prefix(8))
    }

    public var reasonPacked: UInt64 {
        var v: UInt64 = 0
        for (i, b) in reason.utf8.prefix(8).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }

    public static func unpackReason(_ v: UInt64) -> String {
        var bytes = [UInt8]()
        for i in 0..<8 {
            let b = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))
            if b == 0 { break }
            bytes.append(b)
        }
        return String(decoding: bytes, as: UTF8.self).trimmingSpaces().description
    }
}

/// The body of a GAP: sequences `first...last` (inclusive) were lost.
public struct Gap: Sendable, Equatable {
    public enum Scope: UInt8, Sendable {
        /// This subscriber lost publisher sequences (lapped in the ring, or dropped at a high-water mark).
        case publisher = 0
        /// The upstream source lost its own sequences (a MoldUDP64 gap not recovered in time).
        case source = 1
    }
    public var first: UInt64
    public var last: UInt64
    public var scope: Scope
    public init(first: UInt64, last: UInt64, scope: Scope) { self.first = first; self.last = last; self.scope = scope }
    public var count: UInt64 { last &- first &+ 1 }
}

/// The body of a BUST: the trade `tradeID` is void (price, size and side repeat the voided trade when known).
public struct Bust: Sendable, Equatable {
    public var tradeID: UInt64
    public var price: Price
    public var size: Quantity
    public var side: Side
    public init(tradeID: UInt64, price: Price = .zero, size: Quantity = .zero, side: Side = .unknown) {
        self.tradeID = tradeID; self.price = price; self.size = size; self.side = side
    }
}

/// An alert raised by a complex-event rule.
public struct Alert: Sendable, Equatable {
    public var rule: UInt16
    public var value: Int64
    public var threshold: Int64
    public var reference: Int64
    public init(rule: UInt16, value: Int64, threshold: Int64, reference: Int64) {
        self.rule = rule; self.value = value; self.threshold = threshold; self.reference = reference
    }
}

/// A desk's limit use: position, notional, P&L and the fraction of its tightest limit in use.
public struct RiskUse: Sendable, Equatable {
    public var position: Int64
    public var notional: Int64
    public var pnl: Int64
    public var usedBasisPoints: Int64
    public init(position: Int64, notional: Int64, pnl: Int64, usedBasisPoints: Int64) {
        self.position = position; self.notional = notional; self.pnl = pnl; self.usedBasisPoints = usedBasisPoints
    }
}

extension Event {
    public var trade: Trade { Trade(price: Price(e8: a), size: Quantity(e8: b), side: Side(rawValue: flags) ?? .unknown, tradeID: UInt64(bitPattern: c)) }
    public var quote: Quote { Quote(bid: Price(e8: a), bidSize: Quantity(e8: b), ask: Price(e8: c), askSize: Quantity(e8: d)) }
    public var status: Status {
        Status(category: Status.Category(rawValue: flags) ?? .other, state: UInt8(truncatingIfNeeded: a),
               reason: Status.unpackReason(UInt64(bitPattern: b)))
    }
    public var gapBody: Gap { Gap(first: UInt64(bitPattern: a), last: UInt64(bitPattern: b), scope: Gap.Scope(rawValue: flags) ?? .publisher) }
    public var bustBody: Bust { Bust(tradeID: UInt64(bitPattern: c), price: Price(e8: a), size: Quantity(e8: b), side: Side(rawValue: flags) ?? .unknown) }
    public var alertBody: Alert { Alert(rule: UInt16(truncatingIfNeeded: a), value: b, threshold: c, reference: d) }
    public var riskBody: RiskUse { RiskUse(position: a, notional: b, pnl: c, usedBasisPoints: d) }
}
