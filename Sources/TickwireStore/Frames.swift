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
/// row for nullable columns, in storage allocated once for `rowsPerBatch` rows. Writers narrow the values to
/// each type's width when they encode.
public final class FrameBatch {
    public let fields: [FrameField]
    /// How many rows a batch gathers before it is written (an Arrow record batch, a Parquet page). 32,768: a
    /// join's batch storage is then 3.6 MB, two of them in turn (`ArrowWriter` writes one behind the caller);
    /// at 65,536 the fresh memory of a short-lived command cost more on this VM than fewer batches saved (a 2M-row
    /// join into polars 0.112 against 0.121 s median of 30 interleaved rounds; 16,384 0.135 s).
    public static let rowsPerBatch = 32_768
    private var values: UnsafeMutablePointer<Int64>
    private var valid: UnsafeMutablePointer<UInt8>
    private let nullable: [Bool]
    public private(set) var rows = 0

    public init(_ fields: [FrameField]) {
        self.fields = fields
        nullable = fields.map(\.nullable)
        values = .allocate(capacity: fields.count * FrameBatch.rowsPerBatch)
        valid = .allocate(capacity: fields.count * FrameBatch.rowsPerBatch)
    }

    deinit { values.deallocate(); valid.deallocate() }

    /// Sets a column of the row being filled, `row` being `rows` (read once a row: a class property's every
    /// access is checked for exclusivity).
    @inline(__always) func set(_ column: Int, _ row: Int, _ v: Int64) {
        let at = column &* FrameBatch.rowsPerBatch &+ row
        values[at] = v
        valid[at] = 1
    }

    @inline(__always) func setNull(_ column: Int, _ row: Int) {
        let at = column &* FrameBatch.rowsPerBatch &+ row
        values[at] = 0
        valid[at] = 0
    }

    @inline(__always) func endRow() { rows &+= 1 }

    /// Where a column's value for row `row` goes, and its validity (for a nullable column), for filling a run
    /// of rows column by column; `endRows` then counts them.
    @inline(__always) func values(_ column: Int, from row: Int) -> UnsafeMutablePointer<Int64> { self.values + (column &* FrameBatch.rowsPerBatch &+ row) }
    @inline(__always) func valid(_ column: Int, from row: Int) -> UnsafeMutablePointer<UInt8> { self.valid + (column &* FrameBatch.rowsPerBatch &+ row) }
    @inline(__always) func endRows(_ n: Int) { rows &+= n }

    public var isFull: Bool { rows >= FrameBatch.rowsPerBatch }

    /// A column's values, valid until the batch is changed.
    func column(_ c: Int) -> UnsafeBufferPointer<Int64> {
        UnsafeBufferPointer(start: values + c * FrameBatch.rowsPerBatch, count: rows)
    }

    /// A column's validity (1 valid, 0 null); meaningful for a nullable column only.
    func validity(_ c: Int) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: valid + c * FrameBatch.rowsPerBatch, count: rows)
    }

    /// Nulls in a column.
    func nullCount(_ c: Int) -> Int {
        guard nullable[c] else { return 0 }
        var valids = 0
        for v in validity(c) { valids &+= Int(v) }
        return rows - valids
    }

    func removeAll() { rows = 0 }

    /// Trades column storage with `other` (of the same fields), not the row count: a sink that writes this batch's
    /// columns from where they are, behind the caller, keeps them in `other` and gives the caller other storage
    /// (its values then unspecified until refilled).
    func exchangeStorage(with other: FrameBatch) {
        precondition(other.fields.count == fields.count, "storage exchanged between batches of different shapes")
        swap(&values, &other.values)
        swap(&valid, &other.valid)
    }
}

/// Where batches of rows go: an Arrow stream or file, a Parquet dataset.
public protocol FrameSink: AnyObject {
    /// Takes the batch's rows. A sink may keep the batch's storage and leave it other storage: after the call the
    /// row count stands, the values are unspecified until refilled.
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

    /// Appends a merged row as an event row.
    @inline(__always)
    static func appendEvent(_ r: UnsafePointer<MergedRow>, subject: Int32, to b: FrameBatch) {
        let row = b.rows, tag = r.pointee.tag
        let kind = tag & 0xFF, flags = (tag >> 8) & 0xFF
        let a = r.pointee.a, bw = r.pointee.b, c = r.pointee.c, d = r.pointee.d
        b.set(0, row, Int64(subject)); b.set(1, row, kind - 1)
        b.set(2, row, r.pointee.eventTime); b.set(3, row, r.pointee.knownTime)
        if kind == Int64(EventKind.trade.rawValue) || kind == Int64(EventKind.bust.rawValue) {
            b.set(4, row, a); b.set(5, row, bw); b.set(6, row, flags <= 2 ? flags : 0); b.set(7, row, c)
        } else {
            for col in 4...7 { b.setNull(col, row) }
        }
        if kind == Int64(EventKind.quote.rawValue) {
            b.set(8, row, a); b.set(9, row, bw); b.set(10, row, c); b.set(11, row, d)
        } else {
            for col in 8...11 { b.setNull(col, row) }
        }
        b.set(12, row, flags); b.set(13, row, (tag >> 16) & 0xFFFF)
        b.set(14, row, a); b.set(15, row, bw); b.set(16, row, c); b.set(17, row, d)
        b.endRow()
    }

    /// The subjects a query can return, sorted: the dictionary of the `subject` column. Along known time, those of
    /// every partition the query can read (`StoreReader.knownDays`).
    static func subjects(_ reader: StoreReader, _ q: StoreQuery, only suffix: String? = nil) throws(StoreError) -> [String] {
        var all = Set<String>()
        for (_, seg, subjects) in try reader.matching(q, days: q.time == .known ? StoreReader.knownDays(q.from, q.to) : nil) {
            for s in subjects where suffix.map({ seg.subjects[s].hasSuffix($0) }) ?? true { all.insert(seg.subjects[s]) }
        }
        return all.sorted()
    }

    /// Calls `body` with every matching row in replay order (`StoreReader.replay`'s: event time, subject text,
    /// known time, arrival; day after day, through the same cursors and merge) with the subject's index in
    /// `subjects` (sorted): no `Event` or `String` per row.
    static func forEachRow(_ reader: StoreReader, _ q: StoreQuery, subjects: [String],
                           _ body: (UnsafePointer<MergedRow>, Int32) throws -> Void) throws {
        var index = [String: Int32](minimumCapacity: subjects.count)
        for (i, s) in subjects.enumerated() { index[s] = Int32(i) }
        try reader.forEachDay(q) { cursors, merge in
            let column = cursors.map { index[$0.text]! }   // by rank: the subject's dictionary index
            try merge.run { rows, order in
                for i in order { let r = rows + Int(i); try body(r, column[Int(r.pointee.rank)]) }
            }
        }
    }

    /// Appends rows (merged, in replay order) as event rows, column by column: filled a row at a time, a batch is
    /// 36 write streams 512 KiB apart, which alias in the cache (most of a replay's time, BENCH-HISTORY D1).
    static func appendEvents(_ rows: UnsafePointer<MergedRow>, _ n: Int, subjects column: [Int32], to b: FrameBatch) {
        let at = b.rows
        let trade = Int64(EventKind.trade.rawValue), bust = Int64(EventKind.bust.rawValue), quote = Int64(EventKind.quote.rawValue)
        @inline(__always) func fill(_ c: Int, _ value: (MergedRow) -> Int64) {
            let v = b.values(c, from: at)
            for i in 0..<n { v[i] = value(rows[i]) }
        }
        /// A nullable column: the value where `present`, else null (0).
        @inline(__always) func fill(_ c: Int, present: (Int64) -> Bool, _ value: (MergedRow) -> Int64) {
            let v = b.values(c, from: at), ok = b.valid(c, from: at)
            for i in 0..<n {
                let r = rows[i], yes = present(r.tag & 0xFF)
                v[i] = yes ? value(r) : 0
                ok[i] = yes ? 1 : 0
            }
        }
        column.withUnsafeBufferPointer { subjects in fill(0) { Int64(subjects[Int($0.rank)]) } }
        fill(1) { ($0.tag & 0xFF) - 1 }
        fill(2) { $0.eventTime }
        fill(3) { $0.knownTime }
        let isTrade = { (k: Int64) in k == trade || k == bust }, isQuote = { (k: Int64) in k == quote }
        fill(4, present: isTrade) { $0.a }
        fill(5, present: isTrade) { $0.b }
        fill(6, present: isTrade) { let flags = ($0.tag >> 8) & 0xFF; return flags <= 2 ? flags : 0 }
        fill(7, present: isTrade) { $0.c }
        fill(8, present: isQuote) { $0.a }
        fill(9, present: isQuote) { $0.b }
        fill(10, present: isQuote) { $0.c }
        fill(11, present: isQuote) { $0.d }
        fill(12) { ($0.tag >> 8) & 0xFF }
        fill(13) { ($0.tag >> 16) & 0xFFFF }
        fill(14) { $0.a }
        fill(15) { $0.b }
        fill(16) { $0.c }
        fill(17) { $0.d }
        b.endRows(n)
    }

    /// Replays a query (replay order, as known at its K) into a sink as event rows.
    /// - Returns: the rows written.
    @discardableResult
    public static func replay(_ reader: StoreReader, _ q: StoreQuery, into sink: (_ fields: [FrameField]) throws -> FrameSink) throws -> Int {
        if q.time == .known { return try replayKnown(reader, q, into: sink) }
        let subjects = try Frames.subjects(reader, q)
        var index = [String: Int32](minimumCapacity: subjects.count)
        for (i, s) in subjects.enumerated() { index[s] = Int32(i) }
        let fields = eventFields(subjects: subjects)
        let out = try sink(fields)
        let batch = FrameBatch(fields)
        // A window's rows gathered into replay order 4,096 at a time (256 KiB: they stay in the cache for the
        // 18 passes), then spread into columns.
        let chunk = 4096
        let sorted = UnsafeMutablePointer<MergedRow>.allocate(capacity: chunk)
        defer { sorted.deallocate() }
        var total = 0
        try reader.forEachDay(q) { cursors, merge in
            let column = cursors.map { index[$0.text]! }   // by rank: the subject's dictionary index
            try merge.run { rows, order in
                var done = 0
                while done < order.count {
                    let n = min(order.count - done, FrameBatch.rowsPerBatch - batch.rows, chunk)
                    for i in 0..<n { sorted[i] = rows[Int(order[done &+ i])] }
                    appendEvents(sorted, n, subjects: column, to: batch)
                    done += n
                    if batch.isFull { try out.write(batch); total += batch.rows; batch.removeAll() }
                }
            }
        }
        if batch.rows > 0 { try out.write(batch); total += batch.rows }
        try out.finish()
        return total
    }

    /// A replay along known time (`StoreReader.knownOrder`: every version as it arrived, in arrival order),
    /// which holds the window's rows in memory anyway: gathered first, they give the subject dictionary.
    private static func replayKnown(_ reader: StoreReader, _ q: StoreQuery, into sink: (_ fields: [FrameField]) throws -> FrameSink) throws -> Int {
        let (texts, known) = try reader.knownOrder(q)
        let rows = known.map { r in
            MergedRow(eventTime: r.event.eventTime.rawValue, knownTime: r.event.knownTime.rawValue, tag: packTag(r.event),
                      a: r.event.a, b: r.event.b, c: r.event.c, d: r.event.d, rank: Int64(r.subject))
        }
        let subjects = texts.sorted()
        var index = [String: Int32](minimumCapacity: subjects.count)
        for (i, s) in subjects.enumerated() { index[s] = Int32(i) }
        let column = texts.map { index[$0]! }   // by rank (first arrival): the subject's dictionary index
        let fields = eventFields(subjects: subjects)
        let out = try sink(fields)
        let batch = FrameBatch(fields)
        var total = 0
        try rows.withUnsafeBufferPointer { p in
            var done = 0
            while done < p.count {
                let n = min(p.count - done, FrameBatch.rowsPerBatch - batch.rows)
                appendEvents(p.baseAddress! + done, n, subjects: column, to: batch)
                done += n
                if batch.isFull { try out.write(batch); total += batch.rows; batch.removeAll() }
            }
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

    /// Appends rows of a joined block as join rows, column by column (see `appendEvents`).
    static func appendJoinRows(_ batch: AsOfBatch, _ range: Range<Int>, subject: Int64, to b: FrameBatch) {
        let at = b.rows, lo = range.lowerBound, t = batch.trades, match = batch.match
        @inline(__always) func fill(_ c: Int, _ value: (Int) -> Int64) {
            let v = b.values(c, from: at)
            for i in range { v[i &- lo] = value(i) }
        }
        fill(0) { _ in subject }
        fill(1) { t.eventTime[$0] }
        fill(2) { t.knownTime[$0] }
        fill(3) { t.a[$0] }
        fill(4) { t.b[$0] }
        fill(5) { let side = (t.tag[$0] >> 8) & 0xFF; return side <= 2 ? side : 0 }
        fill(6) { t.c[$0] }
        /// A quote column: the matched quote's value, or null (0).
        func fill(_ c: Int, _ quote: [Int64]) {
            quote.withUnsafeBufferPointer { q in
                let v = b.values(c, from: at), ok = b.valid(c, from: at)
                for i in range {
                    let m = match[i]
                    v[i &- lo] = m >= 0 ? q[m] : 0
                    ok[i &- lo] = m >= 0 ? 1 : 0
                }
            }
        }
        let q = batch.quotes
        fill(7, q.eventTime); fill(8, q.knownTime); fill(9, q.bid); fill(10, q.bidSize); fill(11, q.ask); fill(12, q.askSize)
        b.endRows(range.count)
    }

    /// Runs an as-of join into a sink as join rows (subjects in text order, then trade time).
    /// - Returns: the rows written.
    @discardableResult
    public static func asOfJoin(_ reader: StoreReader, _ j: AsOfJoin, into sink: (_ fields: [FrameField]) throws -> FrameSink) throws -> Int {
        var tradeQuery = try StoreQuery(subjects: j.trades, from: j.from, to: j.to, asOf: j.asOf)
        tradeQuery.time = j.time
        let subjects = try Frames.subjects(reader, tradeQuery, only: ".TRADE")
        var index = [String: Int32](minimumCapacity: subjects.count)
        for (i, s) in subjects.enumerated() { index[s] = Int32(i) }
        let fields = joinFields(subjects: subjects)
        let out = try sink(fields)
        let b = FrameBatch(fields)
        var total = 0
        try reader.asOfJoin(j) { batch in
            let s = Int64(index[batch.subject]!)
            var done = 0
            while done < batch.count {
                let n = min(batch.count - done, FrameBatch.rowsPerBatch - b.rows)
                appendJoinRows(batch, done..<(done + n), subject: s, to: b)
                done += n
                if b.isFull { try out.write(b); total += b.rows; b.removeAll() }
            }
        }
        if b.rows > 0 { try out.write(b); total += b.rows }
        try out.finish()
        return total
    }
}
