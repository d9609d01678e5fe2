import TickwireCore

/// Which stored row a correction is about: the row as it first entered the store. Rows with the same subject,
/// event time and known time are told apart by `ordinal`, their order in the partition (arrival order). An event
/// inserted by a correction is named by the correction's known time.
public struct EventIdentity: Hashable, Sendable, CustomStringConvertible {
    public var subject: String
    public var eventTime: Nanos
    public var knownTime: Nanos
    public var ordinal: UInt32

    public init(subject: String, eventTime: Nanos, knownTime: Nanos, ordinal: UInt32 = 0) {
        self.subject = subject; self.eventTime = eventTime; self.knownTime = knownTime; self.ordinal = ordinal
    }

    public var description: String {
        "\(subject) at \(eventTime.rawValue) known \(knownTime.rawValue)" + (ordinal > 0 ? " #\(ordinal)" : "")
    }

    /// The trading day and root of the partition holding it.
    var partition: PartitionKey { PartitionKey(day: Layout.day(of: eventTime.rawValue), root: Layout.root(ofSubject: subject)) }
}

/// The stored words of an event other than its subject and times: what a correction may change.
public struct EventValues: Hashable, Sendable {
    public var kind: EventKind
    public var flags: UInt8
    public var source: UInt16
    public var a: Int64, b: Int64, c: Int64, d: Int64

    public init(kind: EventKind, flags: UInt8 = 0, source: UInt16 = 0, a: Int64 = 0, b: Int64 = 0, c: Int64 = 0, d: Int64 = 0) {
        self.kind = kind; self.flags = flags; self.source = source; self.a = a; self.b = b; self.c = c; self.d = d
    }

    public init(_ e: Event) { self.init(kind: e.kind, flags: e.flags, source: e.source, a: e.a, b: e.b, c: e.c, d: e.d) }

    func event(subjectID: UInt32, eventTime: Nanos, knownTime: Nanos) -> Event {
        Event(subjectID: subjectID, kind: kind, flags: flags, source: source, eventTime: eventTime, knownTime: knownTime,
              a: a, b: b, c: c, d: d)
    }
}

/// What a correction does to its event.
public enum CorrectionChange: Hashable, Sendable {
    /// A new version with these values (the subject, event time and kind stay). On a deleted event: it is back.
    case replace(EventValues)
    /// The event is absent from the correction's known time on.
    case delete
    /// A new event (the identity's subject and event time; its known time is the correction's).
    case insert(EventValues)

    /// `replace`, `delete` or `insert`, as `tickwire correct` takes it.
    public var name: String {
        switch self {
        case .replace: "replace"
        case .delete: "delete"
        case .insert: "insert"
        }
    }
}

/// One record of a partition's corrections log: who changed which event, how, when and why.
public struct CorrectionRecord: Hashable, Sendable {
    /// 1, 2, … within its log.
    public var number: UInt64
    /// When the correction was made: the version it makes is true as known from this moment on.
    public var knownTime: Nanos
    public var target: EventIdentity
    public var change: CorrectionChange
    public var author: String
    public var reason: String
    /// SHA-256 of the previous record (zeros for the first) and of this one: the links of the chain.
    public var prevHash: ChainHash
    public var hash: ChainHash
}

/// A SHA-256 digest, shown as lower-case hex.
public struct ChainHash: Hashable, Sendable, CustomStringConvertible {
    public var bytes: [UInt8]
    public static let zero = ChainHash(bytes: [UInt8](repeating: 0, count: 32))
    public init(bytes: [UInt8]) { self.bytes = bytes }
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
    public var description: String { hex }
}

/// A correction as a person or a rule asks for it, before the store has found its event.
///
/// The event is named by subject and event time, narrowed when needed by its known time, its trade id (TRADE
/// and BUST) and its ordinal among rows equal in all of these. `line` is where it came from (for errors).
public struct CorrectionRequest: Sendable, Equatable {
    public enum Operation: Sendable, Equatable {
        /// Change these fields of the current version (names as in `tickwire replay`'s JSON: `price`, `bid`, …,
        /// or the raw words `a`…`d`, `flags`, `source`); values are e8 fixed point for prices and sizes.
        case replace([String: Int64])
        case delete
        /// A new event of this kind with these fields (the same names).
        case insert(EventKind, [String: Int64])
    }

    public var line: Int
    public var subject: String
    public var eventTime: Nanos
    public var knownTime: Nanos?
    public var tradeID: UInt64?
    public var ordinal: UInt32?
    public var operation: Operation
    public var author: String
    public var reason: String

    public init(line: Int, subject: String, eventTime: Nanos, knownTime: Nanos? = nil, tradeID: UInt64? = nil,
                ordinal: UInt32? = nil, operation: Operation, author: String, reason: String) {
        self.line = line; self.subject = subject; self.eventTime = eventTime; self.knownTime = knownTime
        self.tradeID = tradeID; self.ordinal = ordinal; self.operation = operation; self.author = author; self.reason = reason
    }
}

/// Why a correction was refused. Every case names the request's line.
public enum CorrectionError: Error, Equatable, CustomStringConvertible, Sendable {
    case invalid(line: Int, reason: String)
    case noSuchEvent(line: Int, identity: String)
    case ambiguous(line: Int, identity: String, matches: Int)
    case store(StoreError)

    public var description: String {
        switch self {
        case .invalid(let line, let why): "line \(line): \(why)"
        case .noSuchEvent(let line, let what): "line \(line): no stored event \(what)"
        case .ambiguous(let line, let what, let n):
            "line \(line): \(n) stored events match \(what); name one with known_time, trade_id or ordinal"
        case .store(let e): e.description
        }
    }
}

/// Field names a correction may set, per kind, and the word each one is (matching `EventText`'s JSON).
enum CorrectionFields {
    static var raw: [String: WritableKeyPath<EventValues, Int64>] { ["a": \.a, "b": \.b, "c": \.c, "d": \.d] }

    static func named(_ kind: EventKind) -> [String: WritableKeyPath<EventValues, Int64>] {
        switch kind {
        case .trade: ["price": \.a, "size": \.b, "trade_id": \.c]
        case .bust: ["price": \.a, "size": \.b, "trade_id": \.c]
        case .quote: ["bid": \.a, "bid_size": \.b, "ask": \.c, "ask_size": \.d]
        case .book: ["price": \.a, "size": \.b, "level": \.c, "levels": \.d]
        case .status: ["state": \.a, "reference": \.b, "upper": \.c, "lower": \.d]
        case .alert: ["rule": \.a, "value": \.b, "threshold": \.c, "reference": \.d]
        case .risk: ["position": \.a, "notional": \.b, "pnl": \.c, "used_bp": \.d]
        case .gap: ["first": \.a, "last": \.b]
        }
    }

    /// Applies `fields` to `values`; `side` (1 buy, 2 sell), `flags` and `source` set the small words.
    static func apply(_ fields: [String: Int64], to values: inout EventValues, line: Int) throws(CorrectionError) {
        let named = named(values.kind)
        for (name, v) in fields.sorted(by: { $0.key < $1.key }) {
            if let path = named[name] ?? raw[name] { values[keyPath: path] = v; continue }
            switch name {
            case "side", "flags":
                guard let f = UInt8(exactly: v) else { throw .invalid(line: line, reason: "\(name) \(v) is not 0…255") }
                values.flags = f
            case "source":
                guard let s = UInt16(exactly: v) else { throw .invalid(line: line, reason: "source \(v) is not 0…65535") }
                values.source = s
            default:
                let known = (named.keys.sorted() + ["a", "b", "c", "d", "flags", "source"]).joined(separator: ", ")
                throw .invalid(line: line, reason: "a \(values.kind) has no field '\(name)' (it has \(known))")
            }
        }
    }

}
