import TickwireCore

/// A column's type as the Arrow and Parquet writers lay it out.
public enum FrameType: Sendable, Equatable {
    /// Text from a fixed list (the field's `dictionary`): Arrow dictionary<int32, utf8>, Parquet dictionary-encoded
    /// strings. Values are indices into the list.
    case text
    /// timestamp[ns, UTC]; values are nanoseconds since the epoch.
    case timestamp
    /// decimal(18,8); values are e8 fixed point (`Price.e8`, `Quantity.e8`).
    case decimal
    case int64, uint64, uint8, uint16
    /// IEEE double; values are its bit pattern.
    case float64
}

/// A named, typed column.
public struct FrameField: Sendable {
    public let name: String
    public let type: FrameType
    public let nullable: Bool
    /// The values of a `.text` column (index = stored value); empty otherwise.
    public var dictionary: [String]

    public init(_ name: String, _ type: FrameType, nullable: Bool = false, dictionary: [String] = []) {
        self.name = name; self.type = type; self.nullable = nullable; self.dictionary = dictionary
    }
}

/// Rows being gathered column by column: every value an `Int64` (see `FrameType`), with a validity byte per
/// row for nullable columns. Writers narrow the values to each type's width when they encode.
public struct FrameBatch {
    public let fields: [FrameField]
    public internal(set) var values: [[Int64]]
    /// Per column: 1 valid, 0 null; empty for columns that are not nullable.
    public internal(set) var valid: [[UInt8]]
    public internal(set) var rows = 0

    public init(_ fields: [FrameField]) {
        self.fields = fields
        values = Array(repeating: [], count: fields.count)
        valid = Array(repeating: [], count: fields.count)
        for i in values.indices { values[i].reserveCapacity(FrameBatch.rowsPerBatch) }
    }

    /// How many rows a batch gathers before it is written (an Arrow record batch, a Parquet page).
    public static let rowsPerBatch = 65_536

    @inline(__always) mutating func set(_ column: Int, _ v: Int64) {
        values[column].append(v)
        if fields[column].nullable { valid[column].append(1) }
    }

    @inline(__always) mutating func setNull(_ column: Int) {
        values[column].append(0)
        valid[column].append(0)
    }

    @inline(__always) mutating func endRow() { rows += 1 }

    public var isFull: Bool { rows >= FrameBatch.rowsPerBatch }

    /// Nulls in a column.
    func nullCount(_ column: Int) -> Int {
        fields[column].nullable ? valid[column].count - valid[column].reduce(0) { $0 + Int($1) } : 0
    }

    mutating func removeAll() {
        for i in values.indices {
            values[i].removeAll(keepingCapacity: true)
            valid[i].removeAll(keepingCapacity: true)
        }
        rows = 0
    }
}

/// Where batches of rows go: an Arrow stream or file, a Parquet dataset.
public protocol FrameSink: AnyObject {
    func write(_ batch: FrameBatch) throws
    func finish() throws
}

/// The columns of stored events (replay and export) and of as-of joins, and how rows fill them.
public enum Frames {
    /// Kind names by `EventKind.rawValue - 1`.
    static let kinds = EventKind.allCases.map(\.name)
    /// Side names by `Side.rawValue`.
    static let sides = ["unknown", "buy", "sell"]

    /// Events: `subject`, `kind`, `event_time`, `known_time`; for TRADE and BUST `price`, `size`, `side`,
    /// `trade_id`; for QUOTE `bid`, `bid_size`, `ask`, `ask_size` (null for other kinds); then the raw event:
    /// `flags`, `source`, `a`, `b`, `c`, `d` (the payload words, meaning by kind as in docs/STORAGE.md).
    public static func eventFields(subjects: [String]) -> [FrameField] {
        [FrameField("subject", .text, dictionary: subjects), FrameField("kind", .text, dictionary: kinds),
         FrameField("event_time", .timestamp), FrameField("known_time", .timestamp),
         FrameField("price", .decimal, nullable: true), FrameField("size", .decimal, nullable: true),
         FrameField("side", .text, nullable: true, dictionary: sides), FrameField("trade_id", .uint64, nullable: true),
         FrameField("bid", .decimal, nullable: true), FrameField("bid_size", .decimal, nullable: true),
         FrameField("ask", .decimal, nullable: true), FrameField("ask_size", .decimal, nullable: true),
         FrameField("flags", .uint8), FrameField("source", .uint16),
         FrameField("a", .int64), FrameField("b", .int64), FrameField("c", .int64), FrameField("d", .int64)]
    }

    static func appendEvent(_ e: Event, subject: Int32, to b: inout FrameBatch) {
        b.set(0, Int64(subject)); b.set(1, Int64(e.kind.rawValue) - 1)
        b.set(2, e.eventTime.rawValue); b.set(3, e.knownTime.rawValue)
        if e.kind == .trade || e.kind == .bust {
            b.set(4, e.a); b.set(5, e.b); b.set(6, Int64(e.flags <= 2 ? e.flags : 0)); b.set(7, e.c)
        } else {
            for c in 4...7 { b.setNull(c) }
        }
        if e.kind == .quote {
            b.set(8, e.a); b.set(9, e.b); b.set(10, e.c); b.set(11, e.d)
        } else {
            for c in 8...11 { b.setNull(c) }
        }
        b.set(12, Int64(e.flags)); b.set(13, Int64(e.source))
        b.set(14, e.a); b.set(15, e.b); b.set(16, e.c); b.set(17, e.d)
        b.endRow()
    }

    /// The subjects a query can return, sorted: the dictionary of the `subject` column.
    static func subjects(_ reader: StoreReader, _ q: StoreQuery, only suffix: String? = nil) throws(StoreError) -> [String] {
        var all = Set<String>()
        for (_, seg, subjects) in try reader.matching(q) {
            for s in subjects where suffix.map({ seg.subjects[s].hasSuffix($0) }) ?? true { all.insert(seg.subjects[s]) }
        }
        return all.sorted()
    }

    /// Replays a query (replay order, as known at its K) into a sink as event rows.
    /// - Returns: the rows written.
    @discardableResult
    public static func replay(_ reader: StoreReader, _ q: StoreQuery, into sink: (_ fields: [FrameField]) throws -> FrameSink) throws -> Int {
        let subjects = try Frames.subjects(reader, q)
        var index = [String: Int32](minimumCapacity: subjects.count)
        for (i, s) in subjects.enumerated() { index[s] = Int32(i) }
        let fields = eventFields(subjects: subjects)
        let out = try sink(fields)
        var batch = FrameBatch(fields)
        var total = 0
        // Consecutive events often share a subject; the last one's index is kept to skip the lookup.
        var last = "", lastIndex: Int32 = 0
        try reader.replay(q) { stored in
            if stored.subject != last { last = stored.subject; lastIndex = index[last]! }
            appendEvent(stored.event, subject: lastIndex, to: &batch)
            if batch.isFull { try out.write(batch); total += batch.rows; batch.removeAll() }
        }
        if batch.rows > 0 { try out.write(batch); total += batch.rows }
        try out.finish()
        return total
    }

    /// Join rows: the trade's `subject`, `event_time`, `known_time`, `price`, `size`, `side`, `trade_id`; the
    /// matched quote's `quote_event_time`, `quote_known_time`, `bid`, `bid_size`, `ask`, `ask_size` (null when
    /// none matched).
    public static func joinFields(subjects: [String]) -> [FrameField] {
        [FrameField("subject", .text, dictionary: subjects),
         FrameField("event_time", .timestamp), FrameField("known_time", .timestamp),
         FrameField("price", .decimal), FrameField("size", .decimal),
         FrameField("side", .text, dictionary: sides), FrameField("trade_id", .uint64),
         FrameField("quote_event_time", .timestamp, nullable: true), FrameField("quote_known_time", .timestamp, nullable: true),
         FrameField("bid", .decimal, nullable: true), FrameField("bid_size", .decimal, nullable: true),
         FrameField("ask", .decimal, nullable: true), FrameField("ask_size", .decimal, nullable: true)]
    }

    /// Runs an as-of join into a sink as join rows (subjects in text order, then trade time).
    /// - Returns: the rows written.
    @discardableResult
    public static func asOfJoin(_ reader: StoreReader, _ j: AsOfJoin, into sink: (_ fields: [FrameField]) throws -> FrameSink) throws -> Int {
        let subjects = try Frames.subjects(reader, StoreQuery(subjects: j.trades, from: j.from, to: j.to, asOf: j.asOf), only: ".TRADE")
        var index = [String: Int32](minimumCapacity: subjects.count)
        for (i, s) in subjects.enumerated() { index[s] = Int32(i) }
        let fields = joinFields(subjects: subjects)
        let out = try sink(fields)
        var b = FrameBatch(fields)
        var total = 0
        try reader.asOfJoin(j) { batch in
            let s = Int64(index[batch.subject]!)
            let t = batch.trades, q = batch.quotes
            for i in 0..<batch.count {
                b.set(0, s); b.set(1, t.eventTime[i]); b.set(2, t.knownTime[i]); b.set(3, t.a[i]); b.set(4, t.b[i])
                let side = (t.tag[i] >> 8) & 0xFF
                b.set(5, side <= 2 ? side : 0); b.set(6, t.c[i])
                let m = batch.match[i]
                if m >= 0 {
                    b.set(7, q.eventTime[m]); b.set(8, q.knownTime[m])
                    b.set(9, q.bid[m]); b.set(10, q.bidSize[m]); b.set(11, q.ask[m]); b.set(12, q.askSize[m])
                } else {
                    for c in 7...12 { b.setNull(c) }
                }
                b.endRow()
                if b.isFull { try out.write(b); total += b.rows; b.removeAll() }
            }
        }
        if b.rows > 0 { try out.write(b); total += b.rows }
        try out.finish()
        return total
    }
}
