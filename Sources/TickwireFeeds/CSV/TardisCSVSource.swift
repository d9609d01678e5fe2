import TickwireCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tardis.dev CSV capture: trades (`exchange,symbol,timestamp,local_timestamp,id,side,price,amount`) or
/// quotes (`exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount`).
///
/// `timestamp` (the exchange's time) becomes the event time and `local_timestamp` (when the capture learned
/// it) the known time, both microseconds → nanoseconds exactly. Subjects are
/// `MD.<EXCHANGE uppercased, sanitized>.<SYMBOL>.TRADE|QUOTE`, e.g. `MD.BINANCE-FUTURES.BTCUSDT.TRADE`.
/// A trade id that is not a decimal integer is hashed (FNV-1a, 64 bits) so the id stays stable; an empty one is
/// 0, "no id" (every such fill is its own row in the store, never a correction of another). An empty quote
/// side (no bid or no ask) is published as price 0, size 0.
/// Sizes (`amount`, `ask_amount`, `bid_amount`) must not be negative; a row with one is refused naming line and
/// field (and counted and skipped under `on_error = "skip"`).
public final class TardisCSVSource: EventSource, SkipReporting {
    public enum Kind: String, Sendable { case trades, quotes }

    public let path: String
    public let kind: Kind
    public let policy: ErrorPolicy
    public var name: String { "tardis-\(kind.rawValue):\(path.split(separator: "/").last.map(String.init) ?? path)" }
    let board = CounterBoard()
    let skipLog = SkipLog()
    /// Bytes of rows parsed as one unit (by either thread); small in tests to cross many segment boundaries.
    /// A segment's events (reserved at one a 64 bytes of text) stay under jemalloc's 8 MiB `oversize_threshold`:
    /// larger blocks are given back to the kernel as soon as they are freed, so every segment's events faulted
    /// in fresh pages again (~60K page faults a 5.5M-row import at 8 MiB; docs/BENCH-HISTORY.md, T3).
    var segmentBytes = 6 << 20

    static let tradeColumns = ["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"]
    static let quoteColumns = ["exchange", "symbol", "timestamp", "local_timestamp", "ask_amount", "ask_price", "bid_price", "bid_amount"]

    public init(path: String, kind: Kind, options: FeedOptions = FeedOptions()) {
        self.path = path; self.kind = kind; self.policy = options.errorPolicy
    }

    public func counters() -> [(name: String, value: UInt64)] { board.snapshot() }
    public var skipSummary: String? { skipLog.summary }

    /// Parses straight from the mapped file on two threads (`CSVParallel`), emitting in file order. A row the
    /// byte-level fast path does not take (any unusual form, and every error) is read again through the
    /// field readers, so what is accepted and every error message are as before.
    public func run(into sink: EventSink, stop: StopSignal) throws {
        let file = try MappedFile(path: path)
        var counts = CSVCounts()
        defer { board.publish(counts.pairs()) }
        let wanted = kind == .trades ? TardisCSVSource.tradeColumns : TardisCSVSource.quoteColumns
        var firstSkipped: CSVError?
        defer { skipLog.set(csvSkipSummary(name, counts, first: firstSkipped)) }
        let p = file.bytes
        // The header: the first non-empty line; each column found by name, in any order.
        var offset = 0, line = 0, columns: [Int]?
        while offset < p.count, columns == nil {
            var end = offset
            while end < p.count && p[end] != UInt8(ascii: "\n") { end += 1 }
            line += 1
            var textEnd = end
            if textEnd > offset && p[textEnd - 1] == UInt8(ascii: "\r") { textEnd -= 1 }
            if textEnd > offset {
                let fields = String(decoding: UnsafeRawBufferPointer(rebasing: p[offset..<textEnd]), as: UTF8.self)
                    .split(separator: ",", omittingEmptySubsequences: false)
                var found = [Int]()
                for w in wanted {
                    guard let i = fields.firstIndex(where: { $0 == w }) else {
                        throw CSVError(path: path, line: line, field: w,
                                       reason: "the header has no '\(w)' column; a tardis \(kind.rawValue) file has \(wanted.joined(separator: ","))")
                    }
                    found.append(i)
                }
                columns = found
            }
            offset = min(end + 1, p.count)
        }
        guard let col = columns else {
            throw CSVError(path: path, line: 1, field: "header", reason: "the file is empty; a header line was expected")
        }
        let subjects = sink.subjects
        let parallel = CSVParallel(bytes: p, body: offset..<p.count, segmentBytes: segmentBytes) { [self] range in
            parseSegment(p, range, col, subjects)
        }
        var failure: CSVError?
        parallel.forEachInOrder { segment in
            segment.events.withUnsafeBufferPointer { sink.emit(batch: $0) }
            counts.rows += segment.rows
            counts.events += UInt64(segment.events.count)
            counts.errors += segment.errors
            func absolute(_ e: CSVError) -> CSVError {
                CSVError(path: e.path, line: e.line + line, field: e.field, reason: e.reason)
            }
            if let e = segment.firstError {
                if policy == .stop { failure = absolute(e); return false }
                if firstSkipped == nil { firstSkipped = absolute(e) }
            }
            line += segment.lines
            board.publish(counts.pairs())
            return !stop.isRaised
        }
        if let failure { throw failure }
    }

    /// One segment's rows, parsed.
    struct Segment {
        var events: [Event] = []
        var rows: UInt64 = 0
        var errors: UInt64 = 0
        /// The first row refused (line relative to the segment); under the stop policy, parsing ended there.
        var firstError: CSVError?
        var lines = 0
    }

    /// Parses the rows in `range` (whole lines). Thread-safe: it touches only `subjects` (which locks).
    func parseSegment(_ p: UnsafeRawBufferPointer, _ range: Range<Int>, _ col: [Int], _ subjects: SubjectTable) -> Segment {
        var out = Segment()
        out.events.reserveCapacity(range.count / 64)
        let maxCol = col.max()!
        // Unchecked buffers for the per-byte loop: `n` never passes `maxCol + 1` when it stores.
        let starts = UnsafeMutablePointer<Int>.allocate(capacity: maxCol + 2)
        let column = UnsafeMutablePointer<Int>.allocate(capacity: col.count)
        defer { starts.deallocate(); column.deallocate() }
        starts.initialize(repeating: 0, count: maxCol + 2)
        for i in col.indices { column[i] = col[i] }
        var cache: [String: SubjectID] = [:]
        var byBytes = SubjectsByBytes()
        let sink = InternOnly(subjects: subjects)
        var offset = range.lowerBound
        let end = range.upperBound
        while offset < end {
            var e = offset
            // Fields: the start of each up to `maxCol + 1`; `n` counts them all. Eight bytes at a time (the
            // commas and the line end found by `SWAR.matches`), the last few of the segment one by one.
            var n = 1
            starts[0] = offset
            scan: while true {
                if e &+ 8 <= end {
                    let w = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: e, as: UInt64.self))
                    var commas = SWAR.matches(w, UInt8(ascii: ","))
                    let newline = SWAR.matches(w, UInt8(ascii: "\n"))
                    // Only the commas before the line's end belong to it.
                    if newline != 0 { commas &= (UInt64(1) &<< UInt64(newline.trailingZeroBitCount)) &- 1 }
                    while commas != 0 {
                        if n <= maxCol + 1 { starts[n] = e &+ (commas.trailingZeroBitCount &>> 3) &+ 1 }
                        n += 1
                        commas &= commas &- 1
                    }
                    if newline != 0 { e &+= (newline.trailingZeroBitCount &>> 3); break scan }
                    e &+= 8
                } else {
                    while e < end {
                        let b = p[e]
                        if b == UInt8(ascii: "\n") { break }
                        if b == UInt8(ascii: ",") {
                            if n <= maxCol + 1 { starts[n] = e + 1 }
                            n += 1
                        }
                        e += 1
                    }
                    break scan
                }
            }
            out.lines += 1
            // Constants from here on: the nested `field` captures them by value (a captured `var` would be boxed
            // and checked for exclusive access on every read).
            let lineEnd = e > offset && p[e - 1] == UInt8(ascii: "\r") ? e - 1 : e
            let fieldCount = n
            let lineNext = e + 1
            defer { offset = lineNext }
            if lineEnd == offset { continue }
            out.rows += 1
            func field(_ i: Int) -> Range<Int> {
                let c = column[i]
                let a = starts[c]
                let b = c &+ 1 < fieldCount ? starts[c &+ 1] &- 1 : lineEnd
                return a..<Swift.min(b, lineEnd)
            }
            var taken = false
            if fieldCount > maxCol {
                let ex = field(0), sym = field(1)
                if !ex.isEmpty && !sym.isEmpty, let et = FastField.digits(p, field(2)), let kt = FastField.digits(p, field(3)),
                   et <= Int64.max / 1000, kt <= Int64.max / 1000 {
                    // The subject: found by the bytes of the two fields (no text built for a pair seen before).
                    let subject: SubjectID
                    if let s = byBytes.find(p, ex, sym) { subject = s } else {
                        let exchange = String(decoding: UnsafeRawBufferPointer(rebasing: p[ex]), as: UTF8.self)
                        let symbol = String(decoding: UnsafeRawBufferPointer(rebasing: p[sym]), as: UTF8.self)
                        let key = "\(exchange)\u{0}\(symbol)"
                        if let s = cache[key] { subject = s } else {
                            subject = sink.subjects.intern(Subject.marketData(venue: exchange.uppercased(), symbol: symbol,
                                                                              kind: kind == .trades ? .trade : .quote))
                            cache[key] = subject
                        }
                        byBytes.insert(p, ex, sym, subject)
                    }
                    taken = fastEvent(p, field, subject, Nanos(et * 1000), Nanos(kt * 1000), into: &out.events)
                }
            }
            if taken { continue }
            // The slow path: the row's fields as text, read by the field readers (errors named as before).
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: p[offset..<lineEnd]), as: UTF8.self)
            let fields = text.split(separator: ",", omittingEmptySubsequences: false)
            do throws(CSVError) {
                out.events.append(try self.event(fields, col, CSVField(path: path, line: out.lines), sink, &cache))
            } catch {
                out.errors += 1
                if out.firstError == nil { out.firstError = error }
                if policy == .stop { return out }
            }
        }
        return out
    }

    /// Appends a row in its plain form to `events`; false (nothing appended) for the slow path. The event is
    /// built where it is appended: returned as an optional it went through memory and was copied again, with a
    /// stalled reload (a sixth of the parse's own samples; docs/BENCH-HISTORY.md, T4).
    @inline(__always)
    private func fastEvent(_ p: UnsafeRawBufferPointer, _ field: (Int) -> Range<Int>, _ subject: SubjectID,
                           _ eventTime: Nanos, _ knownTime: Nanos, into events: inout [Event]) -> Bool {
        switch kind {
        case .trades:
            let idField = field(4)
            let id: UInt64
            if idField.isEmpty { id = 0 } else if let v = FastField.digits(p, idField) { id = UInt64(v) } else { return false }
            let s = field(5)
            let side: Side
            if FastField.equals(p, s, "buy") { side = .buy } else if FastField.equals(p, s, "sell") { side = .sell }
            else if s.isEmpty || FastField.equals(p, s, "unknown") { side = .unknown } else { return false }
            guard let price = FastField.e8(p, field(6)), let amount = FastField.e8(p, field(7)), amount >= 0 else { return false }
            events.append(.trade(subject, price: Price(e8: price), size: Quantity(e8: amount), side: side, tradeID: id,
                                 eventTime: eventTime, knownTime: knownTime))
        case .quotes:
            func value(_ i: Int) -> Int64? { let r = field(i); return r.isEmpty ? 0 : FastField.e8(p, r) }
            guard let askSize = value(4), askSize >= 0, let ask = value(5), let bid = value(6),
                  let bidSize = value(7), bidSize >= 0 else { return false }
            events.append(.quote(subject, bid: Price(e8: bid), bidSize: Quantity(e8: bidSize), ask: Price(e8: ask),
                                 askSize: Quantity(e8: askSize), eventTime: eventTime, knownTime: knownTime))
        }
        return true
    }

    /// Gives the field readers' `event` a sink whose only use is interning subjects.
    private final class InternOnly: EventSink {
        let subjects: SubjectTable
        init(subjects: SubjectTable) { self.subjects = subjects }
        func emit(_ event: Event) {}
    }

    func event(_ f: [Substring], _ col: [Int], _ r: CSVField, _ sink: EventSink,
               _ cache: inout [String: SubjectID]) throws(CSVError) -> Event {
        guard f.count > col.max()! else {
            throw r.fail(TardisCSVSource.tradeColumns[0], "the row has \(f.count) fields; the header has at least \(col.max()! + 1)")
        }
        let names = kind == .trades ? TardisCSVSource.tradeColumns : TardisCSVSource.quoteColumns
        let exchange = f[col[0]], symbol = f[col[1]]
        if exchange.isEmpty { throw r.fail("exchange", "it is empty") }
        if symbol.isEmpty { throw r.fail("symbol", "it is empty") }
        let eventTime = try r.micros(f[col[2]], "timestamp")
        let knownTime = try r.micros(f[col[3]], "local_timestamp")
        let key = "\(exchange)\u{0}\(symbol)"
        let subject: SubjectID
        if let s = cache[key] { subject = s } else {
            subject = sink.subjects.intern(Subject.marketData(venue: exchange.uppercased(), symbol: String(symbol),
                                                              kind: kind == .trades ? .trade : .quote))
            cache[key] = subject
        }
        switch kind {
        case .trades:
            let idText = f[col[4]]
            // No id: 0, which the store never takes for a correction key, so distinct fills at one instant stay
            // distinct (a hash of "" would have made every id-less fill there a correction of the one before).
            let id = idText.isEmpty ? 0 : UInt64(idText) ?? TardisCSVSource.fnv1a(idText)
            let side: Side
            switch f[col[5]] {
            case "buy": side = .buy
            case "sell": side = .sell
            case "unknown", "": side = .unknown
            default: throw r.fail(names[5], "'\(f[col[5]])' is not buy, sell or unknown")
            }
            let price = try r.decimal(f[col[6]], names[6]), amount = try r.nonNegativeDecimal(f[col[7]], names[7])
            return .trade(subject, price: Price(e8: price), size: Quantity(e8: amount), side: side, tradeID: id,
                          eventTime: eventTime, knownTime: knownTime)
        case .quotes:
            let askSize = try r.nonNegativeDecimal(f[col[4]], names[4], emptyAs: 0), ask = try r.decimal(f[col[5]], names[5], emptyAs: 0)
            let bid = try r.decimal(f[col[6]], names[6], emptyAs: 0), bidSize = try r.nonNegativeDecimal(f[col[7]], names[7], emptyAs: 0)
            return .quote(subject, bid: Price(e8: bid), bidSize: Quantity(e8: bidSize), ask: Price(e8: ask),
                          askSize: Quantity(e8: askSize), eventTime: eventTime, knownTime: knownTime)
        }
    }

    static func fnv1a(_ s: Substring) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}
